//! The one call that writes a batch of a tenant: fenced by the writer's epoch and the batch's
//! sequence number, all of it or nothing (docs/kpi-engine.md, "A batch").

use std::sync::LazyLock;

use mentorstream_redis::{Connection, RedisError, Script, Value, from_value};

/// Takes a tenant over: increments its epoch and answers the tenant's meta hash (epoch,
/// sequence number, watermarks).
const ACQUIRE: &str = r"
redis.call('HINCRBY', KEYS[1], 'epoch', 1)
return redis.call('HGETALL', KEYS[1])
";

/// KEYS[1] the tenant's meta key. ARGV: epoch, sequence number, the number of watermarks,
/// the watermarks (field, offset), then commands: name, key, argument count, arguments.
/// Answers `fenced` (another writer took the tenant), `applied` (this sequence number was
/// applied before: a retry whose first answer was lost) or `ok`.
const FLUSH: &str = r"
local meta = KEYS[1]
local root = string.sub(meta, 1, #meta - 5)
if redis.call('HGET', meta, 'epoch') ~= ARGV[1] then
  return 'fenced'
end
if tonumber(redis.call('HGET', meta, 'seq') or '0') >= tonumber(ARGV[2]) then
  return 'applied'
end
local allowed = { HSET = true, HDEL = true, SADD = true, SREM = true, ZADD = true, SET = true }
local marks = tonumber(ARGV[3])
local commands = {}
local i = 4 + 2 * marks
while i <= #ARGV do
  local name, key, count = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  if not allowed[name] or not count or string.sub(key, 1, #root) ~= root or i + 2 + count > #ARGV then
    return redis.error_reply('malformed command at argument ' .. i)
  end
  commands[#commands + 1] = { name, key, i + 3, i + 2 + count }
  i = i + 3 + count
end
for _, command in ipairs(commands) do
  redis.call(command[1], command[2], unpack(ARGV, command[3], command[4]))
end
redis.call('HSET', meta, 'seq', ARGV[2], unpack(ARGV, 4, 3 + 2 * marks))
return 'ok'
";

static ACQUIRE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(ACQUIRE));
static FLUSH_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(FLUSH));

/// Arguments of one command at most: Lua's `unpack` has a limit near 8,000.
const MAX_ARGUMENTS: usize = 4_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Another writer took the tenant over.
    Fenced,
}

/// One command of a flush; every key must be the tenant's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub name: &'static str,
    pub key: String,
    pub arguments: Vec<Vec<u8>>,
}

/// Everything a batch writes.
#[derive(Debug, Default)]
pub struct Flush {
    pub epoch: i64,
    pub seq: i64,
    /// (topic/partition, last applied offset)
    pub watermarks: Vec<(String, i64)>,
    pub commands: Vec<Command>,
}

impl Flush {
    /// Adds `pairs` to a hash, in commands of a bounded size.
    pub fn hset(&mut self, key: &str, pairs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) {
        let mut arguments = Vec::new();
        for (field, value) in pairs {
            arguments.push(field);
            arguments.push(value);
            if arguments.len() >= MAX_ARGUMENTS {
                self.push("HSET", key, std::mem::take(&mut arguments));
            }
        }
        self.push("HSET", key, arguments);
    }

    /// A command with members or fields of a key (`SADD`, `SREM`, `HDEL`, `ZADD`…), in
    /// commands of a bounded size; `prefix` (`GT` for `ZADD`) leads each.
    pub fn each(&mut self, name: &'static str, key: &str, prefix: &[&str], items: &[Vec<u8>]) {
        for chunk in items.chunks(MAX_ARGUMENTS) {
            let mut arguments: Vec<Vec<u8>> =
                prefix.iter().map(|word| word.as_bytes().to_vec()).collect();
            arguments.extend_from_slice(chunk);
            self.push(name, key, arguments);
        }
    }

    pub fn set(&mut self, key: &str, value: Vec<u8>) {
        self.push("SET", key, vec![value]);
    }

    fn push(&mut self, name: &'static str, key: &str, arguments: Vec<Vec<u8>>) {
        if arguments.is_empty() || arguments.iter().all(|argument| argument == b"GT") {
            return;
        }
        self.commands.push(Command {
            name,
            key: key.to_owned(),
            arguments,
        });
    }

    /// Sends the flush as one call on the tenant's meta key.
    pub async fn send(&self, connection: &Connection, meta: &str) -> Result<Outcome, RedisError> {
        let mut invocation = FLUSH_SCRIPT.key(meta);
        invocation
            .arg(self.epoch)
            .arg(self.seq)
            .arg(self.watermarks.len());
        for (field, offset) in &self.watermarks {
            invocation.arg(format!("wm:{field}")).arg(offset);
        }
        for command in &self.commands {
            invocation
                .arg(command.name)
                .arg(&command.key)
                .arg(command.arguments.len());
            for argument in &command.arguments {
                invocation.arg(argument.as_slice());
            }
        }
        let answer: String = invocation.invoke_async(&mut connection.clone()).await?;
        Ok(if answer == "fenced" {
            Outcome::Fenced
        } else {
            Outcome::Applied
        })
    }
}

/// What a writer learns when it takes a tenant over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    pub epoch: i64,
    pub seq: i64,
    /// topic/partition → last applied offset
    pub watermarks: std::collections::HashMap<String, i64>,
}

/// Takes the tenant of `meta` over.
pub async fn acquire(connection: &Connection, meta: &str) -> Result<Meta, RedisError> {
    let fields: Value = ACQUIRE_SCRIPT
        .key(meta)
        .invoke_async(&mut connection.clone())
        .await?;
    let fields: std::collections::HashMap<String, i64> = from_value(fields)?;
    let mut taken = Meta::default();
    for (field, value) in fields {
        match field.as_str() {
            "epoch" => taken.epoch = value,
            "seq" => taken.seq = value,
            _ => {
                if let Some(source) = field.strip_prefix("wm:") {
                    taken.watermarks.insert(source.to_owned(), value);
                }
            }
        }
    }
    Ok(taken)
}
