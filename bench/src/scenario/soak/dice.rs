//! Seeded random choices for the soak's users. Each user throws its own
//! dice, seeded from `--seed` and its index, so that two runs with one seed
//! make the same choices (the server's timing aside). SplitMix64 spreads
//! choices well enough for a load, and spares the bench a dependency.

use std::time::Duration;

pub struct Dice(u64);

impl Dice {
    pub fn seeded(seed: u64) -> Self {
        Self(seed)
    }

    /// SplitMix64's next number (Steele, Lea and Flood, 2014).
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1): the top 53 bits, as many as an f64 holds.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p` (from 0 to 1).
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in [low, high).
    pub fn factor(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// Uniform from `low` to `high`.
    pub fn between(&mut self, low: Duration, high: Duration) -> Duration {
        low + high.saturating_sub(low).mul_f64(self.unit())
    }

    /// Uniform in `0..n`; `n` must be more than 0.
    pub fn below(&mut self, n: usize) -> usize {
        // The high half of a 64 × 64-bit product: no modulo bias to speak of.
        let wide = u128::from(self.next_u64()) * n as u128;
        (wide >> 64) as usize
    }

    /// One of `items`, which must not be empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// `k` different items (all of them when `k` is more), in random order.
    pub fn sample<T: Clone>(&mut self, items: &[T], k: usize) -> Vec<T> {
        let mut order: Vec<usize> = (0..items.len()).collect();
        let k = k.min(items.len());
        for i in 0..k {
            let j = i + self.below(items.len() - i);
            order.swap(i, j);
        }
        order[..k].iter().map(|&i| items[i].clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn one_seed_throws_the_same_numbers() {
        let (mut a, mut b) = (Dice::seeded(7), Dice::seeded(7));
        let throws = |d: &mut Dice| (0..100).map(|_| d.below(1000)).collect::<Vec<_>>();
        assert_eq!(throws(&mut a), throws(&mut b));
        assert_ne!(throws(&mut Dice::seeded(7)), throws(&mut Dice::seeded(8)));
    }

    #[test]
    fn draws_stay_within_their_bounds() {
        let mut dice = Dice::seeded(1);
        let (low, high) = (Duration::from_secs(5), Duration::from_secs(30));
        for _ in 0..10_000 {
            assert!(dice.below(3) < 3);
            assert!((low..=high).contains(&dice.between(low, high)));
            assert!((0.5..1.5).contains(&dice.factor(0.5, 1.5)));
        }
        assert_eq!(dice.between(high, high), high);
    }

    #[test]
    fn chances_come_up_about_as_often_as_asked() {
        let mut dice = Dice::seeded(3);
        let hits = (0..10_000).filter(|_| dice.chance(0.2)).count();
        assert!((1_800..2_200).contains(&hits), "{hits} of 10 000");
        assert!(!(0..1000).any(|_| dice.chance(0.0)));
        assert!((0..1000).all(|_| dice.chance(1.0)));
    }

    #[test]
    fn a_sample_holds_different_items() {
        let mut dice = Dice::seeded(5);
        let rooms: Vec<u32> = (0..10).collect();
        for _ in 0..100 {
            let sample = dice.sample(&rooms, 3);
            assert_eq!(sample.len(), 3);
            assert_eq!(sample.iter().collect::<HashSet<_>>().len(), 3);
        }
        assert_eq!(dice.sample(&rooms, 20).len(), 10);
    }
}
