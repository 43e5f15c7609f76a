//! Nickname rules against impersonation, on top of the shared syntax rules
//! (`hubbub_shared::validate`, which the page runs too): the hub canonicalises a nickname to
//! NFKC (so `ＡＬＩＣＥ` is `ALICE`), refuses reserved names and piles of combining marks, and
//! compares nicknames in a room by their UTS #39 confusable skeleton (so `аlice` with a
//! Cyrillic `а` cannot join beside `alice`). These tables stay on the server: the page does not
//! need them and they would weigh on its download.

use hubbub_shared::{ErrorCode, Invalid, Nick};
use unicode_normalization::{UnicodeNormalization, char::is_combining_mark};
use unicode_security::confusable_detection::skeleton;

/// Names nobody may take, compared by look-alike key (so `ADM1N`-style look-alikes too).
const RESERVED: &[&str] =
    &["admin", "administrator", "hubbub", "moderator", "mod", "operator", "root", "server", "system"];

/// Combining marks allowed in one nickname: enough for any real name, not for "zalgo" text.
const MAX_MARKS: usize = 4;

/// A nickname in canonical form and its [`look_alike_key`], worked out once per join (the
/// checks here, the claim across hubs and the room's index all need it; the skeleton was ~3 %
/// of a storm of joins' CPU each time).
#[derive(Debug, Clone)]
pub(crate) struct Canonical {
    pub(crate) nick: Nick,
    pub(crate) look_alike: String,
}

/// The canonical (NFKC) form of a nickname that passed the shared rules, or the refusal.
pub(crate) fn canonical(nick: &Nick) -> Result<Canonical, Invalid> {
    let nfkc: String = nick.as_str().nfkc().collect();
    // NFKC can turn characters into ones the syntax rules refuse (or into spaces to trim)
    let nick = Nick::parse(&nfkc)?;
    if nick.as_str().chars().filter(|c| is_combining_mark(*c)).count() > MAX_MARKS {
        return Err(Invalid {
            code: ErrorCode::NickForbiddenChar,
            reason: format!("A nickname has at most {MAX_MARKS} combining marks."),
        });
    }
    // the reserved names' keys, worked out once (they were a tenth of a storm of joins' CPU)
    static RESERVED_KEYS: std::sync::LazyLock<Vec<String>> =
        std::sync::LazyLock::new(|| RESERVED.iter().map(|r| look_alike_key_of(r)).collect());
    let look_alike = look_alike_key(&nick);
    if RESERVED_KEYS.contains(&look_alike) {
        return Err(Invalid { code: ErrorCode::NickReserved, reason: format!("{nick} is reserved.") });
    }
    Ok(Canonical { nick, look_alike })
}

/// Two nicknames with the same key look alike: the confusable skeleton of the case-folded
/// form.
pub(crate) fn look_alike_key(nick: &Nick) -> String {
    look_alike_key_of(nick.as_str())
}

fn look_alike_key_of(s: &str) -> String {
    let folded: String = s.nfkc().collect::<String>().to_lowercase();
    // the skeleton may map to upper-case look-alikes (e.g. `l` → `I`'s skeleton): fold again
    skeleton(&folded).collect::<String>().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nick(s: &str) -> Nick {
        Nick::parse(s).unwrap()
    }

    #[test]
    fn fullwidth_and_compatibility_forms_are_canonicalised() {
        assert_eq!(canonical(&nick("ＡＬＩＣＥ")).unwrap().nick.as_str(), "ALICE");
        assert_eq!(canonical(&nick("ﬁona")).unwrap().nick.as_str(), "fiona");
        assert_eq!(canonical(&nick("Zoë")).unwrap().nick.as_str(), "Zoë");
    }

    #[test]
    fn look_alikes_share_a_key_and_different_names_do_not() {
        let alice = look_alike_key(&nick("alice"));
        for imitation in ["аlice", "Alice", "ALICE", "ａｌｉｃｅ", "alıce"] {
            assert_eq!(look_alike_key(&nick(imitation)), alice, "{imitation}");
        }
        assert_ne!(look_alike_key(&nick("alicia")), alice);
        assert_ne!(look_alike_key(&nick("bob")), alice);
    }

    #[test]
    fn reserved_names_and_zalgo_are_refused() {
        for reserved in ["admin", "Admin", "ＳＹＳＴＥＭ", "hubbub", "аdmin"] {
            assert_eq!(canonical(&nick(reserved)).unwrap_err().code, ErrorCode::NickReserved, "{reserved}");
        }
        let zalgo = format!("a{}", "\u{0301}".repeat(8)); // NFKC composes one into á
        assert_eq!(canonical(&nick(&zalgo)).unwrap_err().code, ErrorCode::NickForbiddenChar);
        assert!(canonical(&nick("José")).is_ok());
    }

    proptest! {
        #[test]
        fn canonicalisation_is_idempotent(raw in "\\PC{1,40}") {
            if let Ok(parsed) = Nick::parse(&raw)
                && let Ok(once) = canonical(&parsed) {
                    let twice = canonical(&once.nick).expect("a canonical nickname stays valid");
                    prop_assert_eq!(once.nick.as_str(), twice.nick.as_str());
                    prop_assert_eq!(&once.look_alike, &twice.look_alike);
                    prop_assert_eq!(&once.look_alike, &look_alike_key(&once.nick));
                }
        }

        #[test]
        fn the_look_alike_key_ignores_case(raw in "[a-zA-Z0-9 _-]{1,32}") {
            if let Ok(parsed) = Nick::parse(&raw) {
                let upper = Nick::parse(&raw.to_uppercase()).unwrap();
                prop_assert_eq!(look_alike_key(&parsed), look_alike_key(&upper));
            }
        }
    }
}
