//! Which partition a tenant's records go to: every record of a tenant, on the activity and the
//! mentorship topic alike, lands in the partition of the tenant, so one consumer sees all of a
//! tenant's records (docs/kpi-engine.md, "Ownership"). The hash is Kafka's own murmur2, so a
//! Java or Go producer keyed by the tenant id places records the same way.

/// The partition of `tenant_id` among `partitions` (at least 1).
pub fn tenant_partition(tenant_id: &str, partitions: i32) -> i32 {
    let positive = murmur2(tenant_id.as_bytes()) & 0x7fff_ffff;
    // `partitions` is positive, and so is the remainder.
    i32::try_from(positive % partitions.max(1).unsigned_abs()).unwrap_or(0)
}

/// Kafka's `Utils.murmur2` (the Java client's default partitioner hash).
fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let mut h = SEED ^ length;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (position, byte) in tail.iter().enumerate().rev() {
            h ^= u32::from(*byte) << (8 * position);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_is_kafkas() {
        // org.apache.kafka.common.utils.UtilsTest.testMurmur2
        let cases: [(&str, i32); 6] = [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input.as_bytes()).cast_signed(), expected, "{input}");
        }
    }

    #[test]
    fn a_tenant_has_one_partition_in_range() {
        for partitions in [1, 3, 6, 12] {
            for tenant in ["t1", "acme", "a3f0c7e2-9d1b-4e55-8a9e-0c6a2b1d7f10"] {
                let partition = tenant_partition(tenant, partitions);
                assert!((0..partitions).contains(&partition));
                assert_eq!(partition, tenant_partition(tenant, partitions));
            }
        }
        assert_eq!(tenant_partition("anything", 0), 0);
    }
}
