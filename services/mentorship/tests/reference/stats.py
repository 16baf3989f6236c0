"""Independent re-implementation of services/mentorship/src/impact/stats.rs (SplitMix64,
Wilson, type-7 quantiles, the percentile bootstrap and its difference, Newcombe) that
derived the expected values of its unit tests: `python3 services/mentorship/tests/reference/stats.py`.
Standard library only. The Kaplan-Meier curves are worked with exact fractions at the end."""
import math
M = (1 << 64) - 1
class SM:
    def __init__(s, seed): s.state = seed & M
    def next(s):
        s.state = (s.state + 0x9E3779B97F4A7C15) & M
        z = s.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
        return z ^ (z >> 31)
    def below(s, n): return (s.next() * n) >> 64

r = SM(1234567); print("splitmix", [r.next() for _ in range(5)])

Z = 1.959963984540054
def wilson(k, n, z=Z):
    p = k / n; z2 = z * z; d = 1 + z2 / n
    c = (p + z2 / (2 * n)) / d
    h = z / d * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return (c - h, c + h)
for k, n in [(8, 10), (0, 10), (10, 10), (1, 3)]: print("wilson", k, n, repr(wilson(k, n)))

def q7(x, q):
    h = (len(x) - 1) * q; f = math.floor(h); i = int(f)
    return x[i] + (h - f) * (x[i + 1] - x[i]) if i + 1 < len(x) else x[i]

def resample(r, s): return [s[r.below(len(s))] for _ in range(len(s))]
def mean(v): return sum(v) / len(v)
def boot(s, stat, B, seed, level):
    r = SM(seed); vals = []
    for _ in range(B):
        v = stat(resample(r, s))
        if v is not None: vals.append(v)
    vals.sort(); return (q7(vals, (1 - level) / 2), q7(vals, (1 + level) / 2)), vals
def bootd(a, b, stat, B, seed, level):
    r = SM(seed); vals = []
    for _ in range(B):
        ra = resample(r, a); rb = resample(r, b)
        x, y = stat(ra), stat(rb)
        if x is not None and y is not None: vals.append(x - y)
    vals.sort(); return (q7(vals, (1 - level) / 2), q7(vals, (1 + level) / 2)), vals

S = [1.0, 2.0, 4.0, 7.0, 11.0, 16.0]
iv, vals = boot(S, mean, 1000, 42, 0.95); print("boot", repr(iv))
try:
    import numpy as np; print(" numpy", np.quantile(vals, [0.025, 0.975]))
except ImportError: pass
A = [3.0, 5.0, 6.0, 9.0, 12.0]; Bs = [1.0, 2.0, 2.0, 4.0, 6.0, 8.0, 9.0]
iv, vals = bootd(A, Bs, mean, 1000, 7, 0.90); print("bootd", repr(iv))
# statistic that is None sometimes: mean of values > 3, None when none
def pos(v):
    w = [x for x in v if x > 3.0]
    return mean(w) if w else None
iv, vals = boot([1.0, 2.0, 5.0], pos, 200, 9, 0.95); print("boot-skip", repr(iv), len(vals))
def above5(v):
    w = [x for x in v if x > 5.0]
    return mean(w) if w else None
iv, vals = boot([1.0, 2.0, 3.0, 10.0, 20.0], above5, 200, 9, 0.8); print("boot-skip2", repr(iv), len(vals))
def above35(v):
    w = [x for x in v if x > 3.5]
    return mean(w) if w else None
for lvl in (0.9, 0.5):
    iv, vals = boot([1.0, 2.0, 3.0, 10.0, 20.0], above35, 300, 9, lvl); print("boot-skip3", lvl, repr(iv), len(vals))
for lvl in (0.6, 0.7, 0.75):
    iv, vals = boot([1.0, 2.0, 3.0, 10.0, 20.0], above35, 300, 9, lvl)
    m=len(vals); print("boot-skip4", lvl, repr(iv), m, [(m-1)*(1-lvl)/2, (m-1)*(1+lvl)/2], sorted(set(vals)))
def above4(v):
    w = [x for x in v if x > 4.0]
    return mean(w) if w else None
iv, vals = boot([1.0, 6.5, 9.25], above4, 300, 9, 0.9)
m=len(vals); print("boot-skip5", repr(iv), m, [(m-1)*0.05, (m-1)*0.95])
iv2, vals2 = boot([1.0, 6.5, 9.25], lambda v: mean([x for x in v if x > 4.0] or [0.0]), 300, 9, 0.9); print(" no-skip variant", repr(iv2))
for lvl in (0.5, 0.8):
    iv, vals = boot([1.0, 2.0, 6.5, 9.25], above4, 300, 9, lvl)
    m=len(vals); print("boot-skip6", lvl, repr(iv), m, [(m-1)*(1-lvl)/2, (m-1)*(1+lvl)/2])
    iv2, _ = boot([1.0, 2.0, 6.5, 9.25], lambda v: mean([x for x in v if x > 4.0] or [0.0]), 300, 9, lvl); print(" zero-instead-of-skip", repr(iv2))

# Newcombe (1998) hybrid score interval for p1 - p2, from the two Wilson intervals.
def newcombe(x1, n1, x2, n2):
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1)
    l2, u2 = wilson(x2, n2)
    l1, u1 = (0.0 if x1 == 0 else l1), (1.0 if x1 == n1 else u1)
    l2, u2 = (0.0 if x2 == 0 else l2), (1.0 if x2 == n2 else u2)
    d = p1 - p2
    return (d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))
for case in [(56, 70, 48, 80), (9, 10, 3, 10)]: print("newcombe", case, repr(newcombe(*case)))

from fractions import Fraction as F
def km(obs):
    obs = sorted(obs); out = []; s = F(1); i = 0
    while i < len(obs):
        t = obs[i][0]; g = [o for o in obs if o[0] == t]; r = len(obs) - i
        d = sum(1 for o in g if o[1])
        if d: s = s * (r - d) / r; out.append((t, r, d, s, float(s)))
        i += len(g)
    return out
C = [(2,True),(3,False),(3,True),(5,True),(5,False),(7,True),(8,False),(10,True),(12,False),(14,True)]
for row in km(C): print(row)
print(km([(1,True),(2,True),(2,True),(3,False),(4,True),(5,False)]))
print(km([(4,True),(6,False),(9,True),(9,False),(11,False),(15,False)]))
# float check of order s*(r-d)/r
s = 1.0; s = s*5/6; print(repr(s*3/5), repr(s*(3/5)))
