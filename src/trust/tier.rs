//! Federation tiers, as ARK's Python federation service defined them, and what each
//! allows. Recording which peer is in which tier is left to the callers.
//!
//! | tier       | info | pull | push |
//! |------------|------|------|------|
//! | `core`     | yes  | yes  | yes  |
//! | `sandbox`  | yes  | yes  | no   |
//! | `external` | yes  | no   | no   |
//!
//! A core peer syncs both ways; a sandbox peer may copy our lattice but its writes are
//! refused; an external peer only sees instance info for discovery.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    Core,
    Sandbox,
    External,
}

/// What a peer asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Read instance info (name, id, counts) for discovery.
    Info,
    /// Copy records from us.
    Pull,
    /// Write records into our lattice.
    Push,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Core, Tier::Sandbox, Tier::External];

    pub fn name(self) -> &'static str {
        match self {
            Tier::Core => "core",
            Tier::Sandbox => "sandbox",
            Tier::External => "external",
        }
    }

    pub fn allows(self, access: Access) -> bool {
        match (self, access) {
            (_, Access::Info) => true,
            (Tier::Core | Tier::Sandbox, Access::Pull) => true,
            (Tier::Core, Access::Push) => true,
            (Tier::Sandbox | Tier::External, Access::Push) | (Tier::External, Access::Pull) => {
                false
            }
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a text is not a tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TierError {
    /// The name, as given, is not one of [`Tier::ALL`].
    Unknown { name: String },
}

impl fmt::Display for TierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TierError::Unknown { name } => write!(
                f,
                "unknown tier {name:?}; expected one of core, sandbox, external"
            ),
        }
    }
}

impl std::error::Error for TierError {}

impl FromStr for Tier {
    type Err = TierError;

    /// Reads the lowercase names the Python service used; case and surrounding spaces
    /// are forgiven, as the names come from hand-edited config.
    fn from_str(text: &str) -> Result<Tier, TierError> {
        let wanted = text.trim();
        Tier::ALL
            .into_iter()
            .find(|tier| tier.name().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| TierError::Unknown {
                name: text.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        fn check(input: &str, expected: Result<Tier, &str>) {
            assert_eq!(
                input.parse::<Tier>().map_err(|error| error.to_string()),
                expected.map_err(str::to_owned),
                "{input:?}"
            );
        }
        check("core", Ok(Tier::Core));
        check("Sandbox", Ok(Tier::Sandbox));
        check(" external\n", Ok(Tier::External));
        check(
            "trusted",
            Err(r#"unknown tier "trusted"; expected one of core, sandbox, external"#),
        );
        check(
            "",
            Err(r#"unknown tier ""; expected one of core, sandbox, external"#),
        );
        assert_eq!(
            "Trusted ".parse::<Tier>(),
            Err(TierError::Unknown {
                name: "Trusted ".into()
            })
        );
        for tier in Tier::ALL {
            check(&tier.to_string(), Ok(tier));
        }
    }

    #[test]
    fn allows() {
        fn check(tier: Tier, expected: [bool; 3]) {
            let actual =
                [Access::Info, Access::Pull, Access::Push].map(|access| tier.allows(access));
            assert_eq!(actual, expected, "{tier}: info, pull, push");
        }
        check(Tier::Core, [true, true, true]);
        check(Tier::Sandbox, [true, true, false]);
        check(Tier::External, [true, false, false]);
    }
}
