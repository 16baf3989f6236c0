use std::fmt;
use std::str::FromStr;

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Push activity events.
    Ingest,
    /// Read KPIs, sessions, notifications.
    Read,
    /// Change mentorship data and preferences.
    Write,
    /// Manage tenant settings and targets.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Ingest, Scope::Read, Scope::Write, Scope::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope `{0}`: expected ingest, read, write or admin")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.name() == s.trim())
            .ok_or_else(|| UnknownScope(s.to_owned()))
    }
}

/// A set of scopes.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

impl Scopes {
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn with(self, scope: Scope) -> Self {
        Self(self.0 | scope.bit())
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Scope::name).collect()
    }

    pub fn parse_names<S: AsRef<str>>(names: &[S]) -> Result<Self, UnknownScope> {
        names.iter().try_fold(Scopes::default(), |scopes, name| {
            Ok(scopes.with(name.as_ref().parse()?))
        })
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

/// `ingest,read` as on the command line.
impl FromStr for Scopes {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let names: Vec<&str> = s.split(',').filter(|n| !n.trim().is_empty()).collect();
        Scopes::parse_names(&names)
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        iter.into_iter().fold(Scopes::default(), Scopes::with)
    }
}

impl serde::Serialize for Scopes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.names())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_command_line_form() {
        let scopes: Scopes = "ingest, read,admin".parse().expect("valid");
        assert_eq!(scopes.names(), ["ingest", "read", "admin"]);
        assert!(!scopes.contains(Scope::Write));
        assert_eq!(scopes.to_string(), "ingest,read,admin");
    }

    #[test]
    fn names_the_unknown_scope() {
        let err = "read,wrte".parse::<Scopes>().expect_err("typo");
        assert_eq!(
            err.to_string(),
            "unknown scope `wrte`: expected ingest, read, write or admin"
        );
    }
}
