//! Where a tenant's records live in Redis (docs/kpi-engine.md, "State in Redis"). Every key
//! shares the tenant's hash tag: one slot, so one Lua call can change all of them atomically.

use mentorstream_redis::KeySpace;

/// Partners in a subtree from which its team has a record of its own (a hub); a smaller team
/// is summed from its members' records (docs/kpi-engine.md, "Team totals").
pub const HUB_SIZE: u32 = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantKeys {
    /// `{<namespace>:<tenant>}`
    root: String,
}

impl TenantKeys {
    /// The keys of `tenant_id` in the namespace `keys` (a generation).
    pub fn new(keys: &KeySpace, tenant_id: &str) -> Self {
        Self {
            root: keys.hash_tag(&[tenant_id]),
        }
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.root)
    }

    /// Epoch, batch sequence number and offset watermarks.
    pub fn meta(&self) -> String {
        self.key("meta")
    }

    /// Partner id → partner record.
    pub fn partners(&self) -> String {
        self.key("p")
    }

    /// Partner id → team counters, for hubs ([`HUB_SIZE`]).
    pub fn teams(&self) -> String {
        self.key("t")
    }

    /// Group id → group record.
    pub fn groups(&self) -> String {
        self.key("g")
    }

    /// The tenant's counters.
    pub fn tenant(&self) -> String {
        self.key("n")
    }

    /// Partner id → sponsor id (empty for a root): every partner the tenant has.
    pub fn sponsors(&self) -> String {
        self.key("up")
    }

    /// The direct recruits of a partner.
    pub fn recruits(&self, partner_id: &str) -> String {
        self.key(&format!("ch:{partner_id}"))
    }

    /// Partner id scored by the micros of its latest activity, for the inactivity sweep.
    pub fn idle(&self) -> String {
        self.key("idle")
    }

    /// `mentee \x1c goal` scored by the goal's due time, for the GoalMissed sweep.
    pub fn goals(&self) -> String {
        self.key("goals")
    }

    /// Signal id → signal decided by a batch and not yet acknowledged by Kafka.
    pub fn signals(&self) -> String {
        self.key("sig")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_shares_the_tenants_hash_tag() {
        let keys = TenantKeys::new(&KeySpace::new("ms", "kpi:g1"), "t1");
        assert_eq!(keys.root(), "{ms:kpi:g1:t1}");
        assert_eq!(keys.partners(), "{ms:kpi:g1:t1}:p");
        assert_eq!(keys.recruits("p-7"), "{ms:kpi:g1:t1}:ch:p-7");
        for key in [
            keys.meta(),
            keys.teams(),
            keys.groups(),
            keys.tenant(),
            keys.signals(),
        ] {
            assert!(key.starts_with(keys.root()));
        }
    }
}
