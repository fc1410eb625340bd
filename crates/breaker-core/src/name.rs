//! Breaker names: validated so that no name can escape a driver's key namespace.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

/// The longest name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// The validated name of a breaker, shared by every agent that protects the same service.
///
/// Names are interned: a name costs its bytes once per process, and a `Name` is one pointer
/// that copies for free, so a rejection can name its breaker without touching shared memory
/// and errors that carry a name stay small. Since equal names are one copy, two names are
/// compared and hashed by that pointer, never byte by byte (a driver's map lookup of a
/// breaker costs the same for any length of name); they are ordered by their text.
///
/// A name is 1 to [`MAX_NAME_LEN`] ASCII letters, digits, `-`, `_`, `.` or `:`, not starting
/// with `.` or `:`. That keeps it free of path separators, Redis Cluster hash-tag braces,
/// wildcards, white space and control characters, so a driver can append it to its key
/// prefix without escaping and it cannot reach into another namespace.
#[derive(Clone, Copy, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(&'static String);

// Equality and hashing by the interned copy: equal texts are one copy (`intern`), so this
// agrees with comparing the texts, and the derived order, by text, agrees with it.
impl PartialEq for Name {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for Name {}

impl std::hash::Hash for Name {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(self.0, state);
    }
}

/// Why a breaker name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("invalid breaker name: it is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("invalid breaker name {name:?}: {len} bytes, at most {MAX_NAME_LEN} allowed")]
    TooLong {
        /// The refused name, cut to a printable length.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The name holds a character outside the allowed set.
    #[error(
        "invalid breaker name {name:?}: character {found:?} at byte {at} is not allowed \
         (use ASCII letters, digits, '-', '_', '.', ':')"
    )]
    BadCharacter {
        /// The refused name.
        name: String,
        /// The offending character.
        found: char,
        /// Its byte offset.
        at: usize,
    },
    /// The name starts with `.` or `:`.
    #[error("invalid breaker name {name:?}: it may not start with {found:?}")]
    BadStart {
        /// The refused name.
        name: String,
        /// The offending first character.
        found: char,
    },
}

impl Name {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, NameError> {
        Name::check(name)?;
        Ok(Name(intern(name)))
    }

    /// Whether `name` would be a valid name, without keeping it.
    pub fn check(name: &str) -> Result<(), NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > MAX_NAME_LEN {
            let cut: String = name.chars().take(40).collect();
            return Err(NameError::TooLong {
                name: format!("{cut}..."),
                len: name.len(),
            });
        }
        if let Some((at, found)) = name
            .char_indices()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
        {
            return Err(NameError::BadCharacter {
                name: name.to_owned(),
                found,
                at,
            });
        }
        let first = name.as_bytes()[0] as char;
        if matches!(first, '.' | ':') {
            return Err(NameError::BadStart {
                name: name.to_owned(),
                found: first,
            });
        }
        Ok(())
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &'static str {
        self.0.as_str()
    }
}

/// The one copy of each name this process has seen.
fn intern(name: &str) -> &'static String {
    static NAMES: OnceLock<Mutex<HashMap<&'static str, &'static String>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(known) = names.get(name) {
        return known;
    }
    let leaked: &'static String = Box::leak(Box::new(name.to_owned()));
    names.insert(leaked.as_str(), leaked);
    leaked
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Name::new(s)
    }
}

impl TryFrom<String> for Name {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Name::new(&s)
    }
}

impl TryFrom<&str> for Name {
    type Error = NameError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Name::new(s)
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0.clone()
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["payments", "svc-1", "db.primary:read", "A_b", "x"] {
            assert_eq!(Name::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_names_that_could_escape_a_namespace() {
        for bad in ["a/b", "../x", "{slot}", "a b", "a*", "a\n", "é", "a\0"] {
            let err = Name::new(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    NameError::BadCharacter { .. } | NameError::BadStart { .. }
                ),
                "{bad:?}: {err}"
            );
            assert!(err.to_string().contains("invalid breaker name"));
        }
        assert_eq!(Name::new(""), Err(NameError::Empty));
        assert!(matches!(
            Name::new(".hidden"),
            Err(NameError::BadStart { .. })
        ));
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert!(
            matches!(Name::new(&long), Err(NameError::TooLong { len, .. }) if len == MAX_NAME_LEN + 1)
        );
        assert!(Name::new(&long[..MAX_NAME_LEN]).is_ok());
    }

    #[test]
    fn a_name_is_one_pointer() {
        assert_eq!(std::mem::size_of::<Name>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn equal_names_share_one_copy() {
        let a = Name::new("interned-once").unwrap();
        let b = Name::new(&String::from("interned-once")).unwrap();
        assert_eq!(a, b);
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
    }

    #[test]
    fn equality_hashing_and_order_agree_with_the_text() {
        use std::hash::BuildHasher;
        let hasher = std::collections::hash_map::RandomState::new();
        let texts = ["order-a", "order-b", "order-a:x", "order-b"];
        for x in texts {
            for y in texts {
                let (a, b) = (Name::new(x).unwrap(), Name::new(y).unwrap());
                assert_eq!(a == b, x == y, "{x} == {y}");
                assert_eq!(a.cmp(&b), x.cmp(y), "{x} cmp {y}");
                if x == y {
                    assert_eq!(hasher.hash_one(a), hasher.hash_one(b));
                }
            }
        }
        // And names that differ hash apart (a constant hash would pass the above).
        let distinct: std::collections::HashSet<u64> = ["h1", "h2", "h3", "h4"]
            .iter()
            .map(|t| hasher.hash_one(Name::new(t).unwrap()))
            .collect();
        assert_eq!(distinct.len(), 4);
    }

    #[test]
    fn serde_validates() {
        let n: Name = serde_json::from_str("\"ok-name\"").unwrap();
        assert_eq!(n.as_str(), "ok-name");
        let err = serde_json::from_str::<Name>("\"a/b\"").unwrap_err();
        assert!(err.to_string().contains("not allowed"), "{err}");
    }
}
