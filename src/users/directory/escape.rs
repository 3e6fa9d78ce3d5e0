//! The text gatehouse puts into what it sends a directory, and reads back
//! out of what it gets: RFC 4515 escaping of values placed in a search
//! filter, RFC 4514 escaping of attribute values placed in a DN, the
//! filter templates of the settings (`{username}`, `{dn}`), the name of a
//! group read off the first RDN of its DN, and the stable id of an entry
//! as text.
//!
//! Threat: filter injection. A typed name such as `*`, `alice)(uid=*` or
//! `x)(|(objectClass=*` placed into `(uid={username})` unescaped would
//! widen the search to entries that are not the one typed, and a bind as
//! "the one entry found" would then be a bind as someone else. Every
//! value that goes into a filter passes through [`filter_value`], which
//! escapes every byte that is not a plain, harmless ASCII character, so a
//! value can only ever be one assertion value.

use std::fmt::Write as _;

/// `value` escaped for use as an assertion value inside a search filter
/// (RFC 4515, section 3): `*`, `(`, `)`, `\`, NUL, and every byte outside
/// printable ASCII (control characters and each byte of a non-ASCII
/// character) become `\XX` (two lower-case hex digits). The result holds
/// only printable ASCII and cannot end a parenthesis, start a wildcard or
/// escape the next byte.
pub fn filter_value(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value {
        let plain = b == b' ' || (b.is_ascii_graphic() && !matches!(b, b'*' | b'(' | b')' | b'\\'));
        if plain {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\{b:02x}");
        }
    }
    out
}

/// `value` escaped for use as an attribute value in a distinguished name
/// (RFC 4514, section 2.4): `"`, `+`, `,`, `;`, `<`, `>`, `\`, `=` and NUL
/// anywhere, a leading `#` or space and a trailing space are written as
/// `\XX`, and so is every byte outside printable ASCII; the rest is kept.
pub fn dn_value(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        let special = matches!(b, b'"' | b'+' | b',' | b';' | b'<' | b'>' | b'\\' | b'=')
            || (i == 0 && matches!(b, b'#' | b' '))
            || (i + 1 == bytes.len() && b == b' ');
        if special || !(b.is_ascii_graphic() || b == b' ') {
            let _ = write!(out, "\\{b:02x}");
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// A filter template of the settings with its placeholders filled in:
/// each `{name}` in `template` that `values` names is replaced by that
/// value escaped with [`filter_value`]; any other text is kept as it is
/// (the template is the operator's, the values are not).
pub fn fill(template: &str, values: &[(&str, &[u8])]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    'outer: while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        for (name, value) in values {
            if let Some(tail) = after
                .strip_prefix('{')
                .and_then(|t| t.strip_prefix(name))
                .and_then(|t| t.strip_prefix('}'))
            {
                out.push_str(&filter_value(value));
                rest = tail;
                continue 'outer;
            }
        }
        out.push('{');
        rest = &after[1..];
    }
    out.push_str(rest);
    out
}

/// The value of the first RDN of `dn`, unescaped (RFC 4514): `R&D, Europe`
/// for `cn=R&D\, Europe,ou=groups,dc=example,dc=org`. This is a group's
/// name when groups are read from `memberOf`. `None` for text that is not
/// a DN (no `=`, a broken escape) or whose value is not UTF-8.
pub fn first_rdn_value(dn: &str) -> Option<String> {
    let (_, value) = dn.split_once('=')?;
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            // The end of the RDN (or of its first attribute, for a
            // multi-valued RDN).
            b',' | b'+' | b';' => break,
            b'\\' => {
                let next = *bytes.get(i + 1)?;
                if next.is_ascii_hexdigit() {
                    let pair = value.get(i + 1..i + 3)?;
                    out.push(u8::from_str_radix(pair, 16).ok()?);
                    i += 3;
                } else {
                    out.push(next);
                    i += 2;
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    let text = String::from_utf8(out).ok()?;
    let text = text.trim_matches(' ');
    (!text.is_empty()).then(|| text.to_owned())
}

/// A stable id as text, for the users table: printable ASCII as it is
/// (`entryUUID`: `2f0c7b6e-...`), anything else (`objectGUID`'s sixteen
/// bytes) as `hex:` and its bytes in hex. The text depends only on the
/// bytes, so one entry always gives the same id.
pub fn id_text(bytes: &[u8]) -> String {
    if !bytes.is_empty() && !bytes.starts_with(b"hex:") && bytes.iter().all(u8::is_ascii_graphic) {
        // All printable ASCII: valid UTF-8.
        String::from_utf8_lossy(bytes).into_owned()
    } else {
        let mut out = String::with_capacity(4 + 2 * bytes.len());
        out.push_str("hex:");
        for b in bytes {
            let _ = write!(out, "{b:02x}");
        }
        out
    }
}

/// The bytes of an id written by [`id_text`] (`None` for text it cannot
/// have written).
pub fn id_bytes(text: &str) -> Option<Vec<u8>> {
    match text.strip_prefix("hex:") {
        Some(hex) => {
            if hex.is_empty() || hex.len() % 2 != 0 {
                return None;
            }
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect()
        }
        None if !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic()) => {
            Some(text.as_bytes().to_vec())
        }
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a filter parser sees: the assertion value's bytes after
    /// unescaping, or `None` when the text has a bare special character
    /// that would end or change the filter.
    fn unescape_assertion(text: &str) -> Option<Vec<u8>> {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'(' | b')' | b'*' | 0 => return None,
                b'\\' => {
                    out.push(u8::from_str_radix(text.get(i + 1..i + 3)?, 16).ok()?);
                    i += 3;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        Some(out)
    }

    #[test]
    fn filter_specials_nul_and_non_ascii_bytes_are_escaped() {
        assert_eq!(filter_value(b"alice"), "alice");
        assert_eq!(filter_value(b"a.b-c_d@lan"), "a.b-c_d@lan");
        assert_eq!(filter_value(b"*"), "\\2a");
        assert_eq!(filter_value(b"("), "\\28");
        assert_eq!(filter_value(b")"), "\\29");
        assert_eq!(filter_value(b"\\"), "\\5c");
        assert_eq!(filter_value(b"\0"), "\\00");
        assert_eq!(filter_value("é".as_bytes()), "\\c3\\a9");
        assert_eq!(filter_value(b"\r\n\t\x7f"), "\\0d\\0a\\09\\7f");
        assert_eq!(filter_value(b"a b"), "a b");
    }

    #[test]
    fn injection_attempts_stay_one_assertion_value() {
        let attempts: &[&[u8]] = &[
            b"*",
            b"*)(uid=*",
            b"alice)(|(uid=*",
            b"alice)(objectClass=*))(|(uid=",
            b"x)(|(objectClass=*",
            b")(",
            b"\\2a",
            b"\\",
            b"alice\0",
            b"\0)(uid=*",
            b"admin*",
            "al\u{130}ce".as_bytes(),
            b"\xff\xfe(",
        ];
        for attempt in attempts {
            let filter = fill(
                "(&(objectClass=person)(uid={username}))",
                &[("username", attempt)],
            );
            let inner = filter
                .strip_prefix("(&(objectClass=person)(uid=")
                .and_then(|f| f.strip_suffix("))"))
                .expect("the template around the value is intact");
            assert_eq!(
                unescape_assertion(inner).as_deref(),
                Some(*attempt),
                "{filter}"
            );
            // And the filter parses to the same shape: an AND of an
            // equality and an equality (no OR, no presence, no substring).
            assert!(ldap3::parse_filter(&filter).is_ok(), "{filter}");
            assert_eq!(filter.matches('(').count(), 3, "{filter}");
            assert_eq!(filter.matches(')').count(), 3, "{filter}");
            assert!(!filter.contains('*'), "{filter}");
        }
    }

    #[test]
    fn templates_fill_only_the_named_placeholders() {
        assert_eq!(
            fill(
                "(&(member={dn})(cn={username}){other}{)",
                &[("dn", b"cn=x\\, y,dc=z"), ("username", b"u*")]
            ),
            "(&(member=cn=x\\5c, y,dc=z)(cn=u\\2a){other}{)"
        );
        assert_eq!(fill("{username}{username}", &[("username", b"a")]), "aa");
        assert_eq!(
            fill("no placeholder", &[("username", b"a")]),
            "no placeholder"
        );
        assert_eq!(fill("{usern", &[("username", b"a")]), "{usern");
    }

    #[test]
    fn dn_values_escape_what_rfc_4514_says() {
        assert_eq!(dn_value("alice"), "alice");
        assert_eq!(dn_value("Smith, John"), "Smith\\2c John");
        assert_eq!(dn_value("a+b=c"), "a\\2bb\\3dc");
        assert_eq!(dn_value("#1"), "\\231");
        assert_eq!(dn_value(" x "), "\\20x\\20");
        assert_eq!(dn_value("a\"b;c<d>e\\"), "a\\22b\\3bc\\3cd\\3ee\\5c");
        assert_eq!(dn_value("a\0b"), "a\\00b");
        assert_eq!(dn_value("é"), "\\c3\\a9");
        // What dn_value writes, first_rdn_value reads back.
        for value in [
            "Smith, John",
            "R&D, Europe",
            "#1",
            " x ",
            "a+b",
            "é\\\"",
            "x=y",
        ] {
            let dn = format!("cn={},ou=groups,dc=example,dc=org", dn_value(value));
            assert_eq!(first_rdn_value(&dn).as_deref(), Some(value.trim()), "{dn}");
        }
    }

    #[test]
    fn a_groups_name_is_its_first_rdn_value() {
        assert_eq!(
            first_rdn_value("cn=admins,ou=groups,dc=example,dc=org").as_deref(),
            Some("admins")
        );
        assert_eq!(
            first_rdn_value("CN=Domain Admins,CN=Users,DC=corp,DC=example").as_deref(),
            Some("Domain Admins")
        );
        assert_eq!(
            first_rdn_value("cn=R&D\\, Europe,ou=g,dc=x").as_deref(),
            Some("R&D, Europe")
        );
        assert_eq!(
            first_rdn_value("cn=caf\\C3\\A9,dc=x").as_deref(),
            Some("café")
        );
        assert_eq!(first_rdn_value("cn=a+uid=b,dc=x").as_deref(), Some("a"));
        assert_eq!(first_rdn_value("cn=x"), Some("x".to_owned()));
        for bad in [
            "",
            "admins",
            "cn=",
            "cn=\\",
            "cn=\\4",
            "cn=\\zz\\",
            "cn=\\ff,dc=x",
        ] {
            assert_eq!(first_rdn_value(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ids_round_trip_as_text() {
        let uuid = b"2f0c7b6e-1d2a-103f-8f4e-b5d1c0a1e2f3";
        assert_eq!(id_text(uuid), String::from_utf8_lossy(uuid));
        let guid = [
            0x10, 0x9a, 0x00, 0xff, 0x41, 0x42, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
        ];
        let text = id_text(&guid);
        assert_eq!(text, "hex:109a00ff414200010203040506070809");
        for bytes in [&uuid[..], &guid[..], b"hex:abc", b"a b", b"x"] {
            assert_eq!(id_bytes(&id_text(bytes)).as_deref(), Some(bytes));
        }
        for bad in ["", "hex:", "hex:abc", "hex:zz", "a b", "é"] {
            assert_eq!(id_bytes(bad), None, "{bad:?}");
        }
    }
}
