//! Versions for last-writer-wins: a hybrid logical clock plus the writer's instance id.
//!
//! # Implementation
//!
//! An [`Hlc`] packs wall-clock milliseconds into the high 48 bits of a `u64` and a
//! counter into the low 16, so versions compare as plain integers and fit the
//! negentropy item timestamp. [`Clock::tick`] never returns a value at or below one it
//! has returned or observed, even when the wall clock is behind (a Raspberry Pi that
//! boots at 1970): it then counts on from the highest value seen. The store persists
//! the clock's high-water mark in the same transaction as the write that used it.
//!
//! Versions order by `(hlc, instance id)`: equal clocks fall back to the higher
//! instance id, as ARK's Node.js federation broke ties.

use std::fmt;

/// The number of low bits holding the logical counter.
const COUNTER_BITS: u32 = 16;
const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;

/// A hybrid logical clock reading: `millis << 16 | counter`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hlc(pub u64);

impl Hlc {
    pub fn from_parts(millis: u64, counter: u16) -> Hlc {
        Hlc(millis << COUNTER_BITS | u64::from(counter))
    }

    /// Wall-clock milliseconds of this reading.
    pub fn millis(self) -> u64 {
        self.0 >> COUNTER_BITS
    }

    pub fn counter(self) -> u16 {
        (self.0 & COUNTER_MASK) as u16
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.millis(), self.counter())
    }
}

/// A 32-byte instance id: the SHA-256 of the instance's public key, shown as 64 hex.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceId(pub [u8; 32]);

impl InstanceId {
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    pub(crate) fn from_hex(text: &str) -> Result<InstanceId, String> {
        let bytes = parse_hex(text).ok_or_else(|| format!("instance id {text:?} is not hex"))?;
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("instance id {text:?} is not 64 hex digits"))?;
        Ok(InstanceId(array))
    }

    /// The first 8 hex digits, as ARK named instances `ARK-{type}-{short}`.
    pub fn short(&self) -> String {
        hex(&self.0[..4])
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 15)] as char);
    }
    out
}

/// Parses hex (either case); `None` on odd length or a non-hex digit.
pub fn parse_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    let nibble = |byte: u8| (byte as char).to_digit(16).map(|digit| digit as u8);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

/// The version of one record: when (by the hybrid clock) and by whom it was written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub hlc: Hlc,
    pub origin: InstanceId,
}

impl Version {
    /// The wire form: `<millis>.<counter>@<origin hex>`.
    pub fn to_wire(&self) -> String {
        format!("{}@{}", self.hlc, self.origin)
    }

    pub(crate) fn from_wire(text: &str) -> Result<Version, String> {
        let (clock, origin) = text
            .split_once('@')
            .ok_or_else(|| format!("version {text:?} is not <millis>.<counter>@<origin>"))?;
        let (millis, counter) = clock
            .split_once('.')
            .ok_or_else(|| format!("version {text:?} has no counter"))?;
        let millis: u64 = millis
            .parse()
            .ok()
            .filter(|millis| *millis < 1 << 48)
            .ok_or_else(|| format!("version {text:?} has a bad clock"))?;
        let counter: u16 = counter
            .parse()
            .map_err(|_| format!("version {text:?} has a bad counter"))?;
        Ok(Version {
            hlc: Hlc::from_parts(millis, counter),
            origin: InstanceId::from_hex(origin)?,
        })
    }
}

/// The hybrid logical clock of one store.
#[derive(Debug, Clone)]
pub struct Clock {
    last: Hlc,
}

impl Clock {
    /// A clock that will never go back behind `high_water`.
    pub fn new(high_water: Hlc) -> Clock {
        Clock { last: high_water }
    }

    pub(crate) fn high_water(&self) -> Hlc {
        self.last
    }

    /// The next reading for a local write at wall time `now_millis`.
    pub fn tick(&mut self, now_millis: u64) -> Hlc {
        let wall = Hlc::from_parts(now_millis.min((1 << 48) - 1), 0);
        self.last = if wall > self.last {
            wall
        } else {
            // The wall clock is behind what we have seen: count on from there. A counter
            // overflow carries into the millisecond part, which keeps the order total.
            Hlc(self.last.0 + 1)
        };
        self.last
    }

    /// Takes note of a version received from a peer so later local writes order after it.
    pub fn observe(&mut self, remote: Hlc) {
        if remote > self.last {
            self.last = remote;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_is_monotonic_when_the_wall_clock_goes_back() {
        let mut clock = Clock::new(Hlc::default());
        let first = clock.tick(1_700_000_000_000);
        let booted_at_1970 = clock.tick(5_000);
        let again = clock.tick(5_001);
        assert!(first < booted_at_1970 && booted_at_1970 < again);
        assert_eq!(again.millis(), 1_700_000_000_000);
        assert_eq!(again.counter(), 2);
    }

    #[test]
    fn observe_moves_the_clock_past_remote_versions() {
        let mut clock = Clock::new(Hlc::default());
        clock.observe(Hlc::from_parts(2_000_000_000_000, 7));
        let next = clock.tick(1_000);
        assert_eq!(next, Hlc::from_parts(2_000_000_000_000, 8));
    }

    #[test]
    fn versions_order_by_clock_then_origin() {
        let low = InstanceId([1; 32]);
        let high = InstanceId([2; 32]);
        let early = Version {
            hlc: Hlc(10),
            origin: high,
        };
        let late = Version {
            hlc: Hlc(11),
            origin: low,
        };
        assert!(early < late);
        let tie_low = Version {
            hlc: Hlc(10),
            origin: low,
        };
        assert!(tie_low < early);
    }

    #[test]
    fn wire_form_round_trips() {
        let version = Version {
            hlc: Hlc::from_parts(1_706_702_400_123, 3),
            origin: InstanceId([0xab; 32]),
        };
        let wire = version.to_wire();
        assert!(wire.starts_with("1706702400123.3@abab"));
        assert_eq!(Version::from_wire(&wire), Ok(version));
        assert!(Version::from_wire("12@zz").is_err());
        assert!(Version::from_wire("nonsense").is_err());
    }
}
