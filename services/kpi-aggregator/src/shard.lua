-- One atomic step on one shard of the KPI state (docs/kpi-state.md).
--
-- KEYS[1]  the shard's key root, a hash tag: {<prefix>:kpi:<tenant>:p:<partner>},
--          {<prefix>:kpi:<tenant>:g:<group>} or {<prefix>:kpi:<tenant>} for the tenant shard
-- ARGV[1]  mode: "events" (stage 1), "forwarded" (stage 2) or "trim"
-- ARGV[2..4] retention in seconds of day, week and month buckets
-- ARGV[5]  key root of the tenant's partner shards without the partner and the closing brace,
--          e.g. "{ms:kpi:t1:p:"
-- ARGV[6]  key root of the tenant shard
-- ARGV[7]  the tenant's targets, joined by \30, each id \31 subject \31 counter \31 window \31
--          threshold (subject p, g, t or n for tenant; window d, w, m or l): a change that takes
--          a number of a bucket from below a threshold to at or above it announces
--          TargetCrossed
--
-- events:    ARGV[8] watermark field (topic/partition), ARGV[9] first offset, ARGV[10] last
--            offset, then per event: id day week month n_ops and n_ops operations:
--              first <fact> <rank> <n> (<counter> <amount>){n}
--              order <order id> <rank> <volume>
--              refund <order id> <volume>
--              enrol <sponsor or empty> <rank>
--              member <rank> <assign|unassign> <group> <mentor>
--              rank <level> <name> <rank>
--              active <rank>
--              goal <id> <plan> <counter> <target> <start micros> <due micros> <rank>
--            A batch whose first offset is at or below the shard's watermark for that field
--            changes nothing (it was applied before); the answer says so.
-- forwarded: ARGV[8..] entries of other shards' outboxes: source seq body, the body as the
--            source answered it (target \29 kind \29 rank \29 changes). kind is
--              personal  changes of this partner's own counters caused by the event of `rank`
--                        (a recruit), in its day, week, month and lifetime buckets;
--              team      changes of this partner's team counters;
--              tenant    a partner's personal changes: the tenant's counters and leaderboards,
--                        and (rank, when not empty) the partner's new latest activity;
--              group     a mentee's contributions to this group's counters;
--              member    changes of this group's current members: bucket = mentee,
--                        counter = mentor, amount = +1 or -1;
--              mentor    the group's mentor: bucket = mentor (counter and amount unused);
--              child     a change of this partner's direct recruits: bucket = recruit,
--                        amount = +1 or -1;
--              groups    a group of the tenant: bucket = group, counter = mentor;
--              goal      a goal's due time: bucket = mentee \28 goal, counter = due micros.
--            rank is empty except for personal and tenant. An entry whose seq is at or below the shard's
--            watermark for its source was applied before and is skipped.
-- trim:      ARGV[8..] outbox sequence numbers the targets have applied.
--
-- Answer: {applied (1 or 0), watermark, seq1, entry1, seq2, entry2, ...}: the shard's pending
-- outbox entries, each "target \29 kind \29 rank \29 bucket \31 counter \31 amount \30 ...".
--
-- Every key starts with KEYS[1], so all live in its hash slot. Amounts are integers (volumes in
-- hundredths). Ranks order "first" facts: zero-padded occurred_at micros, source and
-- source_event_id joined by \30, compared bytewise. Stored facts join fields with \31; ids
-- cannot contain control characters (ingest refuses them).
--
-- Group attribution (a mentee's contributions count for the group whose membership interval
-- covers the contribution's occurred_at) lives in the partner shard: membership events in
-- `:mem` (rank -> kind \31 group \31 mentor) and every personal contribution in a log per day
-- `:lg:<day>` (rank \31 week \31 month \31 counter -> amount, days indexed in `:lgd`). A late
-- membership event re-attributes the logged contributions whose group it changes.

local root = KEYS[1]
local mode = ARGV[1]
local retention = { d = ARGV[2], w = ARGV[3], m = ARGV[4] }
local partner_prefix = ARGV[5]
local tenant_root = ARGV[6]

local facts = root .. ':f'
local held = root .. ':held'
local outbox = root .. ':out'
local touched = {}
-- Changes of this shard's own (personal) counters and of its team counters in this call.
local personal_changes = {}
local team_changes = {}
-- Per group: changes of its counters, and of its current members.
local group_changes = {}
local member_changes = {}
-- Per group: its mentor, as named by an assignment in this call.
local group_mentors = {}
-- The groups this partner was assigned to by a membership event of this call.
local groups_joined = {}
-- Log days already indexed in this call.
local logged_days = {}

local function pending()
  local answer = redis.call('HGETALL', outbox)
  return answer
end

if mode == 'trim' then
  for k = 8, #ARGV do
    redis.call('HDEL', outbox, ARGV[k])
  end
  return { 1, '0' }
end

local function split(text, separator)
  local fields, start = {}, 1
  while true do
    local stop = string.find(text, separator, start, true)
    if not stop then
      fields[#fields + 1] = string.sub(text, start)
      return fields
    end
    fields[#fields + 1] = string.sub(text, start, stop - 1)
    start = stop + 1
  end
end

local function accumulate(changes, bucket, counter, amount)
  local fields = changes[bucket]
  if not fields then
    fields = {}
    changes[bucket] = fields
  end
  fields[counter] = (fields[counter] or 0) + amount
end

-- This shard's subject kinds: counters 'c' are the partner's (p), the group's (g) or the
-- tenant's (n); 't' are a partner's team (t).
local is_partner = string.sub(root, 1, #partner_prefix) == partner_prefix
-- The partner of a partner shard.
local partner_id = is_partner and string.sub(root, #partner_prefix + 1, -2) or nil
local subject_of = { c = (root == tenant_root and 'n') or (is_partner and 'p') or 'g', t = 't' }

-- Targets by subject \31 counter \31 window letter.
local targets = {}
if ARGV[7] ~= '' then
  for _, spec in ipairs(split(ARGV[7], '\30')) do
    local fields = split(spec, '\31')
    local watched = fields[2] .. '\31' .. fields[3] .. '\31' .. fields[4]
    targets[watched] = targets[watched] or {}
    table.insert(targets[watched], { id = fields[1], counter = fields[3], threshold = tonumber(fields[5]) })
  end
end
-- Crossings in this call: { target, subject kind, bucket, value }.
local crossings = {}

local function counter_add(kind, bucket, counter, amount)
  local key = root .. ':' .. kind .. ':' .. bucket
  local value = redis.call('HINCRBY', key, counter, string.format('%d', amount))
  touched[key] = string.sub(bucket, 1, 1)
  local watching = next(targets) and targets[subject_of[kind] .. '\31' .. counter .. '\31' .. string.sub(bucket, 1, 1)]
  if watching then
    for _, target in ipairs(watching) do
      if value >= target.threshold and value - amount < target.threshold then
        crossings[#crossings + 1] = { target = target, subject = subject_of[kind], bucket = bucket, value = value }
      end
    end
  end
end

-- This partner's membership events, sorted by rank; loaded on first use.
local membership_cache
local function membership()
  if not membership_cache then
    membership_cache = {}
    local stored = redis.call('HGETALL', root .. ':mem')
    for k = 1, #stored, 2 do
      local fields = split(stored[k + 1], '\31')
      membership_cache[#membership_cache + 1] =
        { rank = stored[k], kind = fields[1], group = fields[2], mentor = fields[3] }
    end
    table.sort(membership_cache, function(a, b) return a.rank < b.rank end)
  end
  return membership_cache
end

-- The assignment in effect at the time of `rank` under `events` (all of them when rank is
-- nil), or nil. Membership changes at its occurred_at: a contribution at the very moment of
-- an assignment is the group's. Unassigning from another group than the current one changes
-- nothing, so a transfer's two events may come in either order.
local function assignment_at(events, rank)
  local time = rank and string.sub(rank, 1, 20)
  local current = nil
  for _, event in ipairs(events) do
    if time and string.sub(event.rank, 1, 20) > time then
      break
    end
    if event.kind == 'assign' then
      current = event
    elseif current and current.group == event.group then
      current = nil
    end
  end
  return current
end

local function per_group(all, group, bucket, counter, amount)
  local changes = all[group]
  if not changes then
    changes = {}
    all[group] = changes
  end
  accumulate(changes, bucket, counter, amount)
end

local function group_add(group, bucket, counter, amount)
  per_group(group_changes, group, bucket, counter, amount)
end

-- Feedback is the mentor's own, never a mentee's contribution to a group.
local mentor_only = { fbs = true, fbc = true }

-- The mentee's development goals (from GoalSet), loaded on first use: id, plan, counter,
-- target, start and due (20-digit micros), rank of the GoalSet that set it; stored joined by
-- \31, goals by \29 (ranks hold \30).
local goals_cache
local function goals()
  if not goals_cache then
    goals_cache = {}
    local stored = redis.call('HGET', facts, 'goals')
    if stored and stored ~= '' then
      for _, spec in ipairs(split(stored, '\29')) do
        local f = split(spec, '\31')
        goals_cache[#goals_cache + 1] = {
          id = f[1], plan = f[2], counter = f[3], target = tonumber(f[4]), start = f[5], due = f[6], rank = f[7]
        }
      end
    end
  end
  return goals_cache
end

-- An outbox entry for the signals topic: target "signal", its kind, a rank (the event's or the
-- enrolment's, empty when none) and the announced fact; the forwarder publishes it.
local function announce(kind, rank, fact)
  redis.call('HSET', outbox, redis.call('INCR', root .. ':oseq'),
    'signal\29' .. kind .. '\29' .. rank .. '\29' .. fact)
end

-- A goal's progress moves by `amount` (a contribution at `rank` inside its period);
-- reaching its target announces GoalAchieved (the id names the goal, so reaching it again
-- after a dip repeats it).
local function goal_progress(goal, amount, rank)
  local value = redis.call('HINCRBY', root .. ':gp', goal.id, string.format('%d', amount))
  if value >= goal.target and value - amount < goal.target then
    announce('goal_achieved', rank, table.concat(
      { goal.id, goal.plan, goal.counter, string.format('%d', goal.target), string.format('%d', value) }, '\31'))
  end
end

-- Logs a contribution of the event of `rank` (Explain reads the log), counts it for the
-- group then in effect and for the goals whose period covers it.
local function contribute(rank, buckets, counter, amount)
  local day = buckets[1]
  local log = root .. ':lg:' .. day
  local field = rank .. '\31' .. buckets[2] .. '\31' .. buckets[3] .. '\31' .. counter
  if redis.call('HINCRBY', log, field, string.format('%d', amount)) == 0 then
    redis.call('HDEL', log, field)
  end
  if not logged_days[day] then
    logged_days[day] = true
    redis.call('SADD', root .. ':lgd', day)
    redis.call('EXPIRE', log, retention.d)
  end
  local assignment = not mentor_only[counter] and assignment_at(membership(), rank)
  if assignment then
    for _, bucket in ipairs(buckets) do
      group_add(assignment.group, bucket, counter, amount)
    end
  end
  local time = string.sub(rank, 1, 20)
  for _, goal in ipairs(goals()) do
    if goal.counter == counter and time >= goal.start and time <= goal.due then
      goal_progress(goal, amount, rank)
    end
  end
end

-- A change of this partner's own counters, caused by the event of `rank`, in its day, week,
-- month and lifetime buckets: it also changes the partner's team, its upline's teams, the
-- tenant and the group the partner belonged to then, which finish() takes care of.
local function personal(buckets, counter, amount, rank)
  if amount == 0 then
    return
  end
  for _, bucket in ipairs(buckets) do
    counter_add('c', bucket, counter, amount)
    accumulate(personal_changes, bucket, counter, amount)
  end
  contribute(rank, buckets, counter, amount)
end

local function team(bucket, counter, amount)
  if amount == 0 then
    return
  end
  counter_add('t', bucket, counter, amount)
  redis.call('SADD', root .. ':tb', bucket)
  accumulate(team_changes, bucket, counter, amount)
end

-- The tenant-wide leaderboard of a counter in a bucket: a sorted set of partners scored by the
-- negated value, so that ascending order is best first with ties by partner id. A partner whose
-- value returns to zero leaves it.
local function board(source, bucket, counter, amount)
  if string.sub(source, 1, #partner_prefix) ~= partner_prefix then
    return
  end
  local partner = string.sub(source, #partner_prefix + 1, -2)
  local key = root .. ':lb:' .. counter .. ':' .. bucket
  local score = tonumber(redis.call('ZINCRBY', key, string.format('%d', -amount), partner))
  if score == 0 then
    redis.call('ZREM', key, partner)
  end
  touched[key] = string.sub(bucket, 1, 1)
end

local function emit(target, kind, changes, rank)
  local triples = {}
  for bucket, fields in pairs(changes) do
    for counter, amount in pairs(fields) do
      if amount ~= 0 then
        triples[#triples + 1] = bucket .. '\31' .. counter .. '\31' .. string.format('%d', amount)
      end
    end
  end
  -- A tenant entry may carry only a new last activity (its rank).
  if #triples == 0 and not (kind == 'tenant' and rank) then
    return
  end
  table.sort(triples)
  local seq = redis.call('INCR', root .. ':oseq')
  redis.call('HSET', outbox, seq,
    target .. '\29' .. kind .. '\29' .. (rank or '') .. '\29' .. table.concat(triples, '\30'))
end

local function partner_root(partner)
  return partner_prefix .. partner .. '}'
end

local function group_root(group)
  return string.sub(tenant_root, 1, -2) .. ':g:' .. group .. '}'
end

local function enrolment()
  local current = redis.call('HGET', facts, 'enrol')
  if current then
    return split(current, '\31')
  end
  return nil
end

-- The whole team of this partner, every bucket, as changes (negated when `sign` is -1).
local function team_snapshot(sign)
  local snapshot = {}
  for _, bucket in ipairs(redis.call('SMEMBERS', root .. ':tb')) do
    local fields = redis.call('HGETALL', root .. ':t:' .. bucket)
    if #fields == 0 then
      redis.call('SREM', root .. ':tb', bucket)
    end
    for k = 1, #fields, 2 do
      accumulate(snapshot, bucket, fields[k], sign * tonumber(fields[k + 1]))
    end
  end
  return snapshot
end

-- Keeps the earliest candidate of a fact; moves its amounts when an earlier one arrives.
local function first(fact, rank, buckets, amounts)
  local current = redis.call('HGET', facts, fact)
  if current then
    local stored = split(current, '\31')
    if stored[1] <= rank then
      return false
    end
    local old = { stored[2], stored[3], stored[4], 'life' }
    for k = 5, #stored, 2 do
      personal(old, stored[k], -tonumber(stored[k + 1]), stored[1])
    end
  end
  local record = { rank, buckets[1], buckets[2], buckets[3] }
  for _, pair in ipairs(amounts) do
    personal(buckets, pair[1], pair[2], rank)
    record[#record + 1] = pair[1]
    record[#record + 1] = string.format('%d', pair[2])
  end
  redis.call('HSET', facts, fact, table.concat(record, '\31'))
  return true
end

-- Rank levels first reached in this call, and whether the first sale or the enrolment changed:
-- signals() decides what to announce.
local reached_levels = {}
local sale_changed = false
local enrolment_changed = false
-- The partner's latest activity, when an event of this call moved it forward.
local last_active = nil

-- The latest activity of the partner only moves forward; the tenant shard indexes it for the
-- inactivity sweep (docs/kpi-state.md, "Signals and timers").
local function active(rank)
  local last = redis.call('HGET', facts, 'last')
  if not last or rank > last then
    redis.call('HSET', facts, 'last', rank)
    last_active = rank
  end
end

-- The first time a rank level is reached counts once and keeps the rank's name.
local function rank_reached(level, name, rank, buckets)
  if first('rank\30' .. level, rank, buckets, { { 'rank', 1 } }) then
    redis.call('HSET', facts, 'rname\30' .. level, name)
    reached_levels[#reached_levels + 1] = level
  end
end

-- An order's net volume: what it placed minus what was refunded of it, never below zero.
local function net(volume, refunded)
  return volume - math.min(volume, refunded)
end

-- The earliest OrderPlaced of an order id counts; refunds stay with the order id.
local function order(order_id, rank, volume, buckets)
  local fact = 'o\30' .. order_id
  local current = redis.call('HGET', facts, fact)
  local refunded
  if current then
    local stored = split(current, '\31')
    if stored[1] <= rank then
      return
    end
    refunded = tonumber(stored[6])
    local old = { stored[2], stored[3], stored[4], 'life' }
    personal(old, 'ord', -1, stored[1])
    personal(old, 'pv', -net(tonumber(stored[5]), refunded), stored[1])
  else
    refunded = tonumber(redis.call('HGET', held, order_id) or '0')
    redis.call('HDEL', held, order_id)
  end
  personal(buckets, 'ord', 1, rank)
  personal(buckets, 'pv', net(volume, refunded), rank)
  redis.call('HSET', facts, fact, table.concat(
    { rank, buckets[1], buckets[2], buckets[3], string.format('%d', volume), string.format('%d', refunded) }, '\31'))
  -- The first sale: the earliest order placed, whatever its refunds.
  local sale = redis.call('HGET', facts, 'sale')
  if not sale or split(sale, '\31')[1] > rank then
    redis.call('HSET', facts, 'sale', rank .. '\31' .. order_id .. '\31' .. string.format('%d', volume))
    sale_changed = true
  end
end

-- A refund subtracts in its order's buckets; before its order arrives it is held.
local function refund(order_id, volume)
  local fact = 'o\30' .. order_id
  local current = redis.call('HGET', facts, fact)
  if not current then
    redis.call('HINCRBY', held, order_id, string.format('%d', volume))
    return
  end
  local stored = split(current, '\31')
  local placed = tonumber(stored[5])
  local refunded = tonumber(stored[6])
  personal({ stored[2], stored[3], stored[4], 'life' }, 'pv',
    net(placed, refunded + volume) - net(placed, refunded), stored[1])
  stored[6] = string.format('%d', refunded + volume)
  redis.call('HSET', facts, fact, table.concat(stored, '\31'))
end

-- The earliest enrolment gives the sponsor (the genealogy edge) and the sponsor's recruit.
-- When the sponsor changes, the team built so far moves: the snapshot and the parent pointer
-- change in this one call, so every team change is either in the snapshot or forwarded later.
local function enrol(sponsor, rank, buckets)
  local stored = enrolment()
  local old_sponsor = ''
  if stored then
    if stored[1] <= rank then
      return
    end
    old_sponsor = stored[2]
    if old_sponsor ~= '' then
      local recruit = {}
      for _, bucket in ipairs({ stored[3], stored[4], stored[5], 'life' }) do
        accumulate(recruit, bucket, 'rec', -1)
      end
      emit(partner_root(old_sponsor), 'personal', recruit, stored[1])
    end
  end
  redis.call('HSET', facts, 'enrol', table.concat({ rank, sponsor, buckets[1], buckets[2], buckets[3] }, '\31'))
  enrolment_changed = true
  if sponsor ~= '' then
    local recruit = {}
    for _, bucket in ipairs(buckets) do
      accumulate(recruit, bucket, 'rec', 1)
    end
    emit(partner_root(sponsor), 'personal', recruit, rank)
  end
  if old_sponsor ~= sponsor then
    if old_sponsor ~= '' then
      emit(partner_root(old_sponsor), 'team', team_snapshot(-1))
      emit(partner_root(old_sponsor), 'child', { [partner_id] = { child = -1 } })
    end
    if sponsor ~= '' then
      emit(partner_root(sponsor), 'team', team_snapshot(1))
      emit(partner_root(sponsor), 'child', { [partner_id] = { child = 1 } })
    end
  end
end

-- A membership event. The contributions logged so far whose group it changes move from the
-- old group to the new one, and a change of the current assignment changes both groups'
-- members, all in this call: every contribution is counted for exactly the group whose
-- interval covers it, whichever of the events arrived first.
local function member(rank, kind, group, mentor)
  local before = membership()
  local after = {}
  for k, event in ipairs(before) do
    after[k] = event
  end
  after[#after + 1] = { rank = rank, kind = kind, group = group, mentor = mentor }
  table.sort(after, function(a, b) return a.rank < b.rank end)
  redis.call('HSET', root .. ':mem', rank, kind .. '\31' .. group .. '\31' .. mentor)
  membership_cache = after
  if kind == 'assign' then
    group_mentors[group] = mentor
    groups_joined[group] = true
    emit(tenant_root, 'groups', { [group] = { [mentor] = 1 } })
  end
  for _, day in ipairs(redis.call('SMEMBERS', root .. ':lgd')) do
    local log = redis.call('HGETALL', root .. ':lg:' .. day)
    if #log == 0 then
      redis.call('SREM', root .. ':lgd', day)
    end
    for k = 1, #log, 2 do
      local fields = split(log[k], '\31')
      -- Feedback stays the mentor's: no group's.
      local old = not mentor_only[fields[4]] and assignment_at(before, fields[1])
      local new = not mentor_only[fields[4]] and assignment_at(after, fields[1])
      local old_group = old and old.group
      local new_group = new and new.group
      if old_group ~= new_group then
        local amount = tonumber(log[k + 1])
        for _, bucket in ipairs({ day, fields[2], fields[3], 'life' }) do
          if old_group then
            group_add(old_group, bucket, fields[4], -amount)
          end
          if new_group then
            group_add(new_group, bucket, fields[4], amount)
          end
        end
      end
    end
  end
  local was, is = assignment_at(before, nil), assignment_at(after, nil)
  if (was and was.group) ~= (is and is.group) then
    if was then
      per_group(member_changes, was.group, partner_id, was.mentor, -1)
    end
    if is then
      per_group(member_changes, is.group, partner_id, is.mentor, 1)
    end
  end
end

-- Announces the first sale and each rank level first reached as soon as both the fact and the
-- partner's enrolment (which the number of days counts from) are known, and again when either
-- moves to an earlier event: the signal's id names the fact, not the event, so a consumer that
-- already acted on it ignores the repetition and a compacted view keeps the corrected one. The
-- announcement is an outbox entry for the signals topic: target "signal", kind first_sale or
-- rank, rank = the enrolment's, changes = the fact (rank \31 order \31 volume, or
-- rank \31 level \31 name).
local function signals()
  if not (sale_changed or enrolment_changed or #reached_levels > 0) then
    return
  end
  local enrol = enrolment()
  if not enrol then
    return
  end
  if sale_changed or enrolment_changed then
    local sale = redis.call('HGET', facts, 'sale')
    if sale then
      announce('first_sale', enrol[1], sale)
    end
  end
  local levels = reached_levels
  if enrolment_changed then
    levels = {}
    local all = redis.call('HGETALL', facts)
    for k = 1, #all, 2 do
      if string.sub(all[k], 1, 5) == 'rank\30' then
        levels[#levels + 1] = string.sub(all[k], 6)
      end
    end
  end
  for _, level in ipairs(levels) do
    local reached = split(redis.call('HGET', facts, 'rank\30' .. level), '\31')[1]
    local name = redis.call('HGET', facts, 'rname\30' .. level) or ''
    announce('rank', enrol[1], reached .. '\31' .. level .. '\31' .. name)
  end
end

-- A development goal set (or set again) for this mentee: the latest GoalSet of a goal id
-- counts. Its progress is computed from the contribution log, and its due time indexed in the
-- tenant shard for the GoalMissed sweep.
local function goal(id, plan, counter, target, start, due, rank)
  local list = goals()
  local kept = {}
  for _, existing in ipairs(list) do
    if existing.id == id then
      if existing.rank >= rank then
        return
      end
    else
      kept[#kept + 1] = existing
    end
  end
  local new = { id = id, plan = plan, counter = counter, target = tonumber(target), start = start, due = due, rank = rank }
  kept[#kept + 1] = new
  local specs = {}
  for _, g in ipairs(kept) do
    specs[#specs + 1] = table.concat({ g.id, g.plan, g.counter, string.format('%d', g.target), g.start, g.due, g.rank }, '\31')
  end
  redis.call('HSET', facts, 'goals', table.concat(specs, '\29'))
  goals_cache = kept
  redis.call('HSET', root .. ':gp', id, '0')
  local total, latest = 0, rank
  for _, day in ipairs(redis.call('SMEMBERS', root .. ':lgd')) do
    local log = redis.call('HGETALL', root .. ':lg:' .. day)
    for k = 1, #log, 2 do
      local fields = split(log[k], '\31')
      local time = string.sub(fields[1], 1, 20)
      if fields[4] == counter and time >= start and time <= due then
        total = total + tonumber(log[k + 1])
      end
    end
  end
  goal_progress(new, total, latest)
  emit(tenant_root, 'goal', { [partner_id .. '\28' .. id] = { [due] = 1 } })
end

-- Personal changes reach this partner's team and the tenant; team changes reach the parent;
-- group changes reach their groups.
local function finish()
  if root ~= tenant_root then
    for bucket, fields in pairs(personal_changes) do
      for counter, amount in pairs(fields) do
        team(bucket, counter, amount)
      end
    end
    emit(tenant_root, 'tenant', personal_changes, last_active)
    local stored = enrolment()
    if stored and stored[2] ~= '' then
      emit(partner_root(stored[2]), 'team', team_changes)
    end
  end
  for group, changes in pairs(group_changes) do
    emit(group_root(group), 'group', changes)
  end
  for group, changes in pairs(member_changes) do
    emit(group_root(group), 'member', changes)
  end
  for group, mentor in pairs(group_mentors) do
    emit(group_root(group), 'mentor', { [mentor] = { mentor = 1 } })
  end
  for group in pairs(groups_joined) do
    emit(group_root(group), 'everyone', { [partner_id] = { member = 1 } })
  end
  -- TargetCrossed: target \31 subject kind \31 subject id \31 recipient \31 bucket \31 value
  -- \31 counter \31 threshold.
  for _, crossing in ipairs(crossings) do
    local subject_id, recipient = '', ''
    if crossing.subject == 'p' or crossing.subject == 't' then
      subject_id = partner_id
      recipient = subject_id
    elseif crossing.subject == 'g' then
      subject_id = string.sub(root, #tenant_root + 3, -2)
      recipient = redis.call('GET', root .. ':mentor') or ''
    end
    announce('target', '', table.concat(
      { crossing.target.id, crossing.subject, subject_id, recipient, crossing.bucket,
        string.format('%d', crossing.value), crossing.target.counter,
        string.format('%d', crossing.target.threshold) }, '\31'))
  end
  for key, kind in pairs(touched) do
    local ttl = retention[kind]
    if ttl then
      redis.call('EXPIRE', key, ttl)
    end
  end
end

local function answer(applied, watermark)
  local reply = { applied, string.format('%d', watermark) }
  local entries = pending()
  for k = 1, #entries do
    reply[#reply + 1] = entries[k]
  end
  return reply
end

if mode == 'forwarded' then
  -- Parse everything before writing anything: a malformed call must change nothing.
  local entries = {}
  local k = 8
  while k <= #ARGV do
    local seq = tonumber(ARGV[k + 1])
    local body = ARGV[k + 2]
    if not seq or not body then
      return redis.error_reply('malformed forwarded entry at argument ' .. k)
    end
    -- target \29 kind \29 rank \29 changes
    local parts = split(body, '\29')
    if #parts ~= 4 then
      return redis.error_reply('malformed forwarded entry at argument ' .. k)
    end
    local entry = { source = ARGV[k], seq = seq, kind = parts[2], rank = parts[3], changes = {} }
    if parts[4] ~= '' then
      for _, change in ipairs(split(parts[4], '\30')) do
        local fields = split(change, '\31')
        entry.changes[#entry.changes + 1] = { fields[1], fields[2], tonumber(fields[3]) }
      end
    end
    k = k + 3
    entries[#entries + 1] = entry
  end
  local watermarks = root .. ':fw'
  for _, entry in ipairs(entries) do
    local applied = tonumber(redis.call('HGET', watermarks, entry.source) or '0')
    if entry.seq > applied then
      if entry.kind == 'personal' then
        -- One cause: per counter, the same amount in its day, week, month and lifetime.
        local buckets, amounts = {}, {}
        local slot = { d = 1, w = 2, m = 3, l = 4 }
        for _, change in ipairs(entry.changes) do
          buckets[slot[string.sub(change[1], 1, 1)]] = change[1]
          amounts[change[2]] = change[3]
        end
        for counter, amount in pairs(amounts) do
          personal(buckets, counter, amount, entry.rank)
        end
      end
      for _, change in ipairs(entry.changes) do
        local bucket, counter, amount = change[1], change[2], change[3]
        if entry.kind == 'team' then
          team(bucket, counter, amount)
        elseif entry.kind == 'tenant' then
          counter_add('c', bucket, counter, amount)
          board(entry.source, bucket, counter, amount)
        elseif entry.kind == 'group' then
          counter_add('c', bucket, counter, amount)
        elseif entry.kind == 'member' then
          if redis.call('HINCRBY', root .. ':members', bucket, amount) == 0 then
            redis.call('HDEL', root .. ':members', bucket)
          end
        elseif entry.kind == 'everyone' then
          -- Everyone ever assigned to the group, whichever order the membership events came
          -- in (a transfer out may arrive before the assignment it ends): whose contributions
          -- Explain looks at.
          redis.call('SADD', root .. ':everyone', bucket)
        elseif entry.kind == 'mentor' then
          redis.call('SET', root .. ':mentor', bucket)
        elseif entry.kind == 'child' then
          -- The genealogy downwards: the partners whose earliest enrolment names this one.
          if redis.call('HINCRBY', root .. ':children', bucket, amount) <= 0 then
            redis.call('HDEL', root .. ':children', bucket)
          end
        elseif entry.kind == 'goal' then
          -- A goal's due time (micros), for the GoalMissed sweep: member = mentee \28 goal.
          redis.call('ZADD', root .. ':goals', counter, bucket)
        elseif entry.kind == 'groups' then
          -- Every group of the tenant and its mentor, for group leaderboards.
          redis.call('HSET', root .. ':groups', bucket, counter)
        end
      end
      if entry.kind == 'tenant' and entry.rank ~= '' then
        -- The partner's latest activity, as micros: who has been idle since when.
        local partner = string.sub(entry.source, #partner_prefix + 1, -2)
        redis.call('ZADD', root .. ':idle', 'GT', string.sub(entry.rank, 1, 20), partner)
      end
      redis.call('HSET', watermarks, entry.source, entry.seq)
    end
  end
  finish()
  return answer(1, 0)
end

if mode ~= 'events' then
  return redis.error_reply('unknown mode ' .. tostring(mode))
end

local watermark_field = ARGV[8]
local first_offset = tonumber(ARGV[9])
local last_offset = tonumber(ARGV[10])
local watermark = tonumber(redis.call('HGET', root .. ':wm', watermark_field) or '-1')
if first_offset <= watermark then
  return answer(0, watermark)
end

-- Parse everything before writing anything: a malformed call must change nothing.
local events = {}
local i = 11
while i <= #ARGV do
  local event = { id = ARGV[i], buckets = { ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], 'life' }, ops = {} }
  local operations = tonumber(ARGV[i + 4])
  if not operations then
    return redis.error_reply('malformed event at argument ' .. i)
  end
  i = i + 5
  for _ = 1, operations do
    local operation = ARGV[i]
    if operation == 'first' then
      local fact, rank, count = ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
      i = i + 4
      local amounts = {}
      for k = 1, count do
        amounts[k] = { ARGV[i], tonumber(ARGV[i + 1]) }
        i = i + 2
      end
      event.ops[#event.ops + 1] = { 'first', fact, rank, amounts }
    elseif operation == 'order' then
      event.ops[#event.ops + 1] = { 'order', ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]) }
      i = i + 4
    elseif operation == 'refund' then
      event.ops[#event.ops + 1] = { 'refund', ARGV[i + 1], tonumber(ARGV[i + 2]) }
      i = i + 3
    elseif operation == 'enrol' then
      event.ops[#event.ops + 1] = { 'enrol', ARGV[i + 1], ARGV[i + 2] }
      i = i + 3
    elseif operation == 'active' then
      event.ops[#event.ops + 1] = { 'active', ARGV[i + 1] }
      i = i + 2
    elseif operation == 'rank' then
      event.ops[#event.ops + 1] = { 'rank', ARGV[i + 1], ARGV[i + 2], ARGV[i + 3] }
      i = i + 4
    elseif operation == 'goal' then
      event.ops[#event.ops + 1] = { 'goal', ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7] }
      i = i + 8
    elseif operation == 'member' then
      event.ops[#event.ops + 1] = { 'member', ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4] }
      i = i + 5
    else
      return redis.error_reply('unknown operation ' .. tostring(operation) .. ' at argument ' .. i)
    end
  end
  events[#events + 1] = event
end

for _, event in ipairs(events) do
  local buckets = event.buckets
  -- An event id is seen once per shard: a record published twice counts once. Its day never
  -- changes, so the set of the event's day is enough, and expires with the day bucket.
  local seen = root .. ':s:' .. buckets[1]
  if redis.call('SADD', seen, event.id) == 1 then
    redis.call('EXPIRE', seen, retention.d)
    for _, op in ipairs(event.ops) do
      if op[1] == 'first' then
        first(op[2], op[3], buckets, op[4])
      elseif op[1] == 'order' then
        order(op[2], op[3], op[4], buckets)
      elseif op[1] == 'refund' then
        refund(op[2], op[3])
      elseif op[1] == 'enrol' then
        enrol(op[2], op[3], buckets)
      elseif op[1] == 'rank' then
        rank_reached(op[2], op[3], op[4], buckets)
      elseif op[1] == 'active' then
        active(op[2])
      elseif op[1] == 'goal' then
        goal(op[2], op[3], op[4], op[5], op[6], op[7], op[8])
      else
        member(op[2], op[3], op[4], op[5])
      end
    end
  end
end

signals()
finish()
redis.call('HSET', root .. ':wm', watermark_field, string.format('%d', last_offset))
return answer(1, last_offset)
