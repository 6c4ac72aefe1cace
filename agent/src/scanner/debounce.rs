//! One presentation of a card is one scan.
//!
//! Scanners in continuous or presentation mode re-read a code held under them many
//! times a second, and cashiers press the trigger twice. The same card from the same
//! scanner within `debounce_ms` of its previous read is therefore the same scan. The
//! window slides: a phone left on the scanner stays one scan however long it lies
//! there, and the card counts again once it has been away for a full window.

use protocol::CardId;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The recent reads of one scanner.
#[derive(Debug, Clone)]
pub struct Debouncer {
    window: Duration,
    last_read: HashMap<CardId, Instant>,
}

impl Debouncer {
    /// A debouncer with a window of `window` (zero: every read is a scan).
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            last_read: HashMap::new(),
        }
    }

    /// Records a read of `card` at `now` and tells whether it repeats a read within
    /// the window.
    pub fn is_repeat(&mut self, card: &CardId, now: Instant) -> bool {
        let window = self.window;
        // Only reads inside the window matter; the map stays as small as a human
        // can make it.
        self.last_read
            .retain(|_, at| now.saturating_duration_since(*at) < window);
        self.last_read.insert(card.clone(), now).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(s: &str) -> CardId {
        CardId::parse(s).unwrap()
    }

    #[test]
    fn the_same_card_within_the_window_is_one_scan() {
        let mut d = Debouncer::new(Duration::from_millis(1_500));
        let t = Instant::now();
        assert!(!d.is_repeat(&card("12345678"), t));
        assert!(d.is_repeat(&card("12345678"), t + Duration::from_millis(1_000)));
        assert!(!d.is_repeat(&card("87654321"), t + Duration::from_millis(1_100)));
    }

    #[test]
    fn the_window_slides_while_the_card_stays_under_the_scanner() {
        let mut d = Debouncer::new(Duration::from_millis(1_000));
        let t = Instant::now();
        assert!(!d.is_repeat(&card("12345678"), t));
        for i in 1..=10 {
            assert!(d.is_repeat(&card("12345678"), t + Duration::from_millis(500 * i)));
        }
        // Taken away for a full window, then shown again: a new scan.
        assert!(!d.is_repeat(&card("12345678"), t + Duration::from_millis(6_100)));
    }

    #[test]
    fn interleaved_cards_are_each_debounced() {
        let mut d = Debouncer::new(Duration::from_secs(2));
        let t = Instant::now();
        assert!(!d.is_repeat(&card("11111111"), t));
        assert!(!d.is_repeat(&card("22222222"), t));
        assert!(d.is_repeat(&card("11111111"), t + Duration::from_millis(10)));
    }

    #[test]
    fn a_zero_window_debounces_nothing() {
        let mut d = Debouncer::new(Duration::ZERO);
        let t = Instant::now();
        assert!(!d.is_repeat(&card("12345678"), t));
        assert!(!d.is_repeat(&card("12345678"), t));
    }
}
