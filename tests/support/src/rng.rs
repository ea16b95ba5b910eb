//! A small deterministic PRNG (SplitMix64) and the value shapes the generator draws from it.
//!
//! Our own generator rather than `rand`, so that a seed gives the same data dir with any
//! version of any crate.

pub use crate::timestamp::{civil_from_days, days_from_civil};

/// SplitMix64: tiny, fast, and good enough for test data.
pub struct Rng(u64);

const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
const HEX: &[u8] = b"0123456789abcdef";

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// An independent stream for one purpose (a table), so that changing one table's
    /// generation does not shift the others.
    pub fn fork(&mut self, salt: u64) -> Rng {
        Rng(self.next_u64() ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len() as u64) as usize]
    }

    /// A version-4 UUID in its text form.
    pub fn uuid_v4(&mut self) -> String {
        let hi = (self.next_u64() & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000;
        let lo = (self.next_u64() & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
        let mut s = String::with_capacity(36);
        for (i, byte) in hi.to_be_bytes().iter().chain(lo.to_be_bytes().iter()).enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                s.push('-');
            }
            s.push(HEX[(byte >> 4) as usize] as char);
            s.push(HEX[(byte & 15) as usize] as char);
        }
        s
    }

    /// `len` lowercase hex digits.
    pub fn hex(&mut self, len: usize) -> String {
        (0..len).map(|_| HEX[self.below(16) as usize] as char).collect()
    }

    /// A DID the way ArcBlock prints them: a prefix (`z1` for accounts, `zNK` for apps) and
    /// base58 to 35 or 36 characters.
    pub fn did(&mut self, prefix: &str) -> String {
        let total = if prefix == "z1" { 35 } else { 36 };
        let mut s = String::with_capacity(total);
        s.push_str(prefix);
        while s.len() < total {
            s.push(BASE58[self.below(58) as usize] as char);
        }
        s
    }

    /// A public IPv4 address (≤ 15 characters).
    pub fn ipv4(&mut self) -> String {
        format!("{}.{}.{}.{}", self.range(11, 223), self.below(256), self.below(256), self.range(1, 254))
    }
}

/// Milliseconds since the epoch → Sequelize's SQLite form `2026-11-25 19:18:38.463 +00:00`.
pub fn sequelize_timestamp(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rest = ms.rem_euclid(86_400_000);
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s, milli) = (rest / 3_600_000, rest / 60_000 % 60, rest / 1000 % 60, rest % 1000);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{milli:03} +00:00")
}

/// Milliseconds since the epoch → `YYYY-MM-DD`.
pub fn date_only(ms: i64) -> String {
    let (y, mo, d) = civil_from_days(ms.div_euclid(86_400_000));
    format!("{y:04}-{mo:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_shape() {
        // 2026-11-25 19:18:38.463 UTC
        let ms = (days_from_civil(2026, 11, 25) * 86_400 + 19 * 3600 + 18 * 60 + 38) * 1000 + 463;
        assert_eq!(sequelize_timestamp(ms), "2026-11-25 19:18:38.463 +00:00");
        assert_eq!(date_only(ms), "2026-11-25");
    }

    #[test]
    fn deterministic_and_shaped() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        assert_eq!(a.uuid_v4(), b.uuid_v4());
        let u = a.uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
        assert_eq!(a.did("z1").len(), 35);
        assert_eq!(a.did("zNK").len(), 36);
        for _ in 0..1000 {
            let r = a.range(3, 5);
            assert!((3..=5).contains(&r));
        }
    }
}
