-- Stage 1 of docs/kpi-state.md: one batch of one topic-partition, applied to one partner shard.
--
-- KEYS[1]  the shard's key root, a hash tag: {<prefix>:<tenant>:p:<partner>}
-- ARGV[1]  watermark field (topic/partition)
-- ARGV[2]  first offset of the batch, ARGV[3] last offset
-- ARGV[4..6] retention in seconds of day, week and month buckets
-- then one group per event:
--   id day week month n_ops, followed by n_ops operations:
--   add <metric> <amount>
--   first <fact> <rank> <n> (<metric> <amount>){n}
--   order <order id> <rank> <volume>
--   refund <order id> <volume>
--
-- Returns {1, last offset} when applied, {0, watermark} when the batch starts at or below the
-- watermark (already applied, at least in part): nothing is changed then.
--
-- Every key is derived from KEYS[1], so all of them live in its hash slot. Amounts are integers
-- (volumes in hundredths). Ranks order "first" facts: zero-padded occurred_at micros, source and
-- source_event_id joined by \30, compared bytewise. Stored facts join fields with \31; ids
-- cannot contain control characters (ingest refuses them).

local root = KEYS[1]
local watermark_field = ARGV[1]
local first_offset = tonumber(ARGV[2])
local last_offset = tonumber(ARGV[3])

local watermark = tonumber(redis.call('HGET', root .. ':wm', watermark_field) or '-1')
if first_offset <= watermark then
  return {0, string.format('%d', watermark)}
end

local retention = { d = ARGV[4], w = ARGV[5], m = ARGV[6] }
local facts = root .. ':f'
local held = root .. ':held'
local touched = {}

local function split(text)
  local fields, start = {}, 1
  while true do
    local stop = string.find(text, '\31', start, true)
    if not stop then
      fields[#fields + 1] = string.sub(text, start)
      return fields
    end
    fields[#fields + 1] = string.sub(text, start, stop - 1)
    start = stop + 1
  end
end

local function add(buckets, metric, amount)
  if amount == 0 then
    return
  end
  for _, bucket in ipairs(buckets) do
    redis.call('HINCRBY', root .. ':c:' .. bucket, metric, string.format('%d', amount))
    touched[bucket] = true
  end
end

-- Keeps the earliest candidate of a fact; moves its amounts when an earlier one arrives.
local function first(fact, rank, buckets, amounts)
  local current = redis.call('HGET', facts, fact)
  if current then
    local stored = split(current)
    if stored[1] <= rank then
      return
    end
    local old = { stored[2], stored[3], stored[4], 'life' }
    for k = 5, #stored, 2 do
      add(old, stored[k], -tonumber(stored[k + 1]))
    end
  end
  local record = { rank, buckets[1], buckets[2], buckets[3] }
  for _, pair in ipairs(amounts) do
    add(buckets, pair[1], pair[2])
    record[#record + 1] = pair[1]
    record[#record + 1] = string.format('%d', pair[2])
  end
  redis.call('HSET', facts, fact, table.concat(record, '\31'))
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
    local stored = split(current)
    if stored[1] <= rank then
      return
    end
    refunded = tonumber(stored[6])
    local old = { stored[2], stored[3], stored[4], 'life' }
    add(old, 'ord', -1)
    add(old, 'pv', -net(tonumber(stored[5]), refunded))
  else
    refunded = tonumber(redis.call('HGET', held, order_id) or '0')
    redis.call('HDEL', held, order_id)
  end
  add(buckets, 'ord', 1)
  add(buckets, 'pv', net(volume, refunded))
  redis.call('HSET', facts, fact, table.concat(
    { rank, buckets[1], buckets[2], buckets[3], string.format('%d', volume), string.format('%d', refunded) }, '\31'))
end

-- A refund subtracts in its order's buckets; before its order arrives it is held.
local function refund(order_id, volume)
  local fact = 'o\30' .. order_id
  local current = redis.call('HGET', facts, fact)
  if not current then
    redis.call('HINCRBY', held, order_id, string.format('%d', volume))
    return
  end
  local stored = split(current)
  local placed = tonumber(stored[5])
  local refunded = tonumber(stored[6])
  local change = net(placed, refunded + volume) - net(placed, refunded)
  add({ stored[2], stored[3], stored[4], 'life' }, 'pv', change)
  stored[6] = string.format('%d', refunded + volume)
  redis.call('HSET', facts, fact, table.concat(stored, '\31'))
end

-- Parse everything before writing anything: a malformed call must change nothing.
local events = {}
local i = 7
while i <= #ARGV do
  local event = { id = ARGV[i], buckets = { ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], 'life' }, ops = {} }
  local operations = tonumber(ARGV[i + 4])
  if not operations then
    return redis.error_reply('malformed event at argument ' .. i)
  end
  i = i + 5
  for _ = 1, operations do
    local operation = ARGV[i]
    if operation == 'add' then
      event.ops[#event.ops + 1] = { 'add', ARGV[i + 1], tonumber(ARGV[i + 2]) }
      i = i + 3
    elseif operation == 'first' then
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
      if op[1] == 'add' then
        add(buckets, op[2], op[3])
      elseif op[1] == 'first' then
        first(op[2], op[3], buckets, op[4])
      elseif op[1] == 'order' then
        order(op[2], op[3], op[4], buckets)
      else
        refund(op[2], op[3])
      end
    end
  end
end

for bucket in pairs(touched) do
  local ttl = retention[string.sub(bucket, 1, 1)]
  if ttl then
    redis.call('EXPIRE', root .. ':c:' .. bucket, ttl)
  end
end
redis.call('HSET', root .. ':wm', watermark_field, string.format('%d', last_offset))
return {1, string.format('%d', last_offset)}
