//! Move tickets: 128 random bits, handed to the target device once as 32 hex digits.
//!
//! The store never holds a ticket, only its SHA-256 ([`TicketHash`]); audit records and logs
//! show only the hash's first 8 hex digits. Debug of a [`Ticket`] shows that short id too.

use crate::store::TicketHash;
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// A ticket: the secret a device presents to take over a session. Wiped from memory on drop.
#[derive(Clone)]
pub struct Ticket(Zeroizing<[u8; 16]>);

/// A ticket could not be made or read. Never contains the ticket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// The presented text is not 32 hex digits.
    #[error("ticket: not 32 hex digits ({len} characters given)")]
    Malformed { len: usize },
    /// The operating system's random source failed.
    #[error("ticket: the OS random source failed: {0}")]
    Random(String),
}

impl Ticket {
    /// A ticket from 16 random bytes (the caller's random source: tests, or [`Ticket::generate`]).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A fresh ticket from the operating system's random source.
    pub fn generate() -> Result<Self, TicketError> {
        let mut bytes = Zeroizing::new([0u8; 16]);
        getrandom::fill(&mut bytes[..]).map_err(|e| TicketError::Random(e.to_string()))?;
        Ok(Self(bytes))
    }

    /// Reads a presented ticket (32 hex digits, either case; surrounding whitespace ignored).
    pub fn parse(s: &str) -> Result<Self, TicketError> {
        let s = s.trim();
        let malformed = TicketError::Malformed { len: s.chars().count() };
        if s.len() != 32 {
            return Err(malformed);
        }
        let bytes = Zeroizing::new(crate::store::records::unhex(s).ok_or(malformed.clone())?);
        let array: [u8; 16] = bytes.as_slice().try_into().map_err(|_| malformed)?;
        Ok(Self(Zeroizing::new(array)))
    }

    /// The ticket as the device receives it: 32 lowercase hex digits. The one place it is
    /// shown; never log it.
    pub fn expose(&self) -> Zeroizing<String> {
        Zeroizing::new(crate::store::records::hex(&self.0[..]))
    }

    /// Its SHA-256: the store's key for it.
    pub fn hash(&self) -> TicketHash {
        TicketHash(Sha256::digest(&self.0[..]).into())
    }

    /// Does this ticket hash to `stored`? Compared in constant time.
    pub fn matches(&self, stored: &TicketHash) -> bool {
        self.hash().0.ct_eq(&stored.0).into()
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ticket({})", self.hash().short_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips_and_debug_hides_it() {
        let t = Ticket::from_bytes([0x5a; 16]);
        let text = t.expose();
        assert_eq!(text.len(), 32);
        let back = Ticket::parse(&format!(" {} \n", text.to_uppercase())).unwrap();
        assert!(back.matches(&t.hash()));
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("5a5a"), "{dbg}");
        assert_eq!(dbg, format!("Ticket({})", t.hash().short_id()));
    }

    #[test]
    fn malformed_tickets_are_refused_without_echo() {
        for bad in ["", "abc", "zz5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a", "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"] {
            let err = Ticket::parse(bad).unwrap_err();
            assert!(!err.to_string().contains("5a5a"), "{err}");
        }
        // Multibyte text of 32 bytes is not 32 hex digits either.
        assert!(Ticket::parse("éééééééééééééééé").is_err());
    }

    #[test]
    fn generated_tickets_differ() {
        let a = Ticket::generate().unwrap();
        let b = Ticket::generate().unwrap();
        assert!(!a.matches(&b.hash()));
    }
}
