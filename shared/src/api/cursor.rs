//! Opaque page cursors: where the next page starts, bound to the query
//! that gave it (the merchant among it), so a cursor of another merchant or
//! another query, or one changed on the way, is refused (400).
//!
//! The digest covers the position and the query. It is not a secret MAC: a
//! merchant who forges a cursor still reads only its own partition (the
//! merchant is the key), so a digest that catches a wrong or damaged cursor
//! is all a cursor needs.

use base64::Engine;

fn digest(position: &str, query: &str) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(position.as_bytes());
    hash.update([0]);
    hash.update(query.as_bytes());
    hex::encode(&hash.finalize()[..8])
}

/// The cursor of `position` in the answer to `query`.
pub fn encode(position: &str, query: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{position}|{}", digest(position, query)))
}

/// The position `cursor` names, if `query` gave it and `valid` takes the
/// position.
pub fn decode(cursor: &str, query: &str, valid: impl Fn(&str) -> bool) -> Option<String> {
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    let text = String::from_utf8(text).ok()?;
    let (position, sum) = text.rsplit_once('|')?;
    (sum == digest(position, query) && valid(position)).then(|| position.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_belongs_to_its_query_and_position() {
        let c = encode("0001#a", "m_1|x");
        assert_eq!(decode(&c, "m_1|x", |_| true).as_deref(), Some("0001#a"));
        assert_eq!(decode(&c, "m_2|x", |_| true), None);
        assert_eq!(decode(&c, "m_1|x", |_| false), None);
        // The position changed, the digest kept.
        use base64::Engine;
        let text = String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&c)
                .unwrap(),
        )
        .unwrap();
        let tampered = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(text.replace("0001#a", "0002#a"));
        assert_eq!(decode(&tampered, "m_1|x", |_| true), None);
        assert_eq!(decode("not a cursor", "m_1|x", |_| true), None);
    }
}
