//! A tolerant XML tag extractor, enough for UPnP device descriptions and
//! SOAP answers: find the elements with a given local name (namespace
//! prefixes ignored, names compared without regard to ASCII case) and read
//! their text. It is not a validating parser: unknown markup is skipped,
//! comments and processing instructions are stepped over, and malformed
//! input simply finds nothing. Linear in the input, which the HTTP layer
//! bounds; at most [`MAX_ELEMENTS`] elements are returned per query.

/// Most elements one query returns.
pub const MAX_ELEMENTS: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Tag<'a> {
    /// Byte offset of `<`.
    start: usize,
    /// Byte offset just after `>`.
    end: usize,
    /// Local name (prefix removed).
    name: &'a str,
    closing: bool,
    self_closing: bool,
}

/// The tags of `xml` in order, skipping comments, `<?...?>` and `<!...>`.
fn tags(xml: &str) -> impl Iterator<Item = Tag<'_>> {
    let bytes = xml.as_bytes();
    let mut at = 0usize;
    std::iter::from_fn(move || loop {
        let lt = at + xml.get(at..)?.find('<')?;
        let rest = xml.get(lt..)?;
        if rest.starts_with("<!--") {
            at = lt + 4 + rest.get(4..)?.find("-->")? + 3;
            continue;
        }
        let gt = lt + rest.find('>')?;
        at = gt + 1;
        let inner = xml.get(lt + 1..gt)?;
        if inner.starts_with('?') || inner.starts_with('!') {
            continue;
        }
        let closing = inner.starts_with('/');
        let self_closing = bytes.get(gt.wrapping_sub(1)) == Some(&b'/') && !closing;
        let body = inner.trim_start_matches('/').trim_end_matches('/');
        let qname = body
            .split(|c: char| c.is_ascii_whitespace())
            .next()
            .unwrap_or("");
        let name = qname.rsplit(':').next().unwrap_or(qname);
        if name.is_empty() {
            continue;
        }
        return Some(Tag {
            start: lt,
            end: gt + 1,
            name,
            closing,
            self_closing,
        });
    })
}

/// The inner markup of every outermost element named `name`.
pub fn elements<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut open_end = 0usize;
    for tag in tags(xml) {
        if !tag.name.eq_ignore_ascii_case(name) {
            continue;
        }
        if tag.self_closing {
            if depth == 0 {
                out.push("");
            }
        } else if tag.closing {
            if depth == 1 {
                if let Some(inner) = xml.get(open_end..tag.start) {
                    out.push(inner);
                }
            }
            depth = depth.saturating_sub(1);
        } else {
            if depth == 0 {
                open_end = tag.end;
            }
            depth += 1;
        }
        if out.len() >= MAX_ELEMENTS {
            break;
        }
    }
    out
}

/// The text of the first element named `name`: trimmed, with the five
/// predefined entities and numeric character references decoded; `None`
/// when there is no such element.
pub fn text(xml: &str, name: &str) -> Option<String> {
    elements(xml, name)
        .first()
        .map(|inner| decode(inner.trim()))
}

fn decode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp..];
        let Some(semi) = after.find(';').filter(|i| *i <= 10) else {
            out.push('&');
            rest = &after[1..];
            continue;
        };
        let entity = &after[1..semi];
        let ch = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &after[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `s` with `&`, `<` and `>` escaped, for text we put into SOAP bodies.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_and_prefixed_elements() {
        let xml = r#"<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><!-- <service>not this</service> -->
 <device><deviceList><device><serviceList>
  <service><serviceType>urn:a:1</serviceType><controlURL>/a</controlURL></service>
  <Service><serviceType>urn:b:1</serviceType><controlURL> /b&amp;c </controlURL></Service>
 </serviceList></device></deviceList></device></root>"#;
        let services = elements(xml, "service");
        assert_eq!(services.len(), 2);
        assert_eq!(text(services[1], "controlURL").as_deref(), Some("/b&c"));
        // Outermost only: the inner device is part of the outer one.
        assert_eq!(elements(xml, "device").len(), 1);
        let soap = r#"<s:Envelope><s:Body><u:GetExternalIPAddressResponse xmlns:u="x">
<NewExternalIPAddress>198.51.101.10</NewExternalIPAddress></u:GetExternalIPAddressResponse></s:Body></s:Envelope>"#;
        assert_eq!(
            text(soap, "NewExternalIPAddress").as_deref(),
            Some("198.51.101.10")
        );
        assert_eq!(text("<a><b/></a>", "b").as_deref(), Some(""));
    }

    #[test]
    fn garbage_finds_nothing_and_never_panics() {
        for xml in [
            "",
            "<",
            "<<<>>>",
            "<a",
            "</a>",
            "<a>unclosed",
            "<!--",
            "<a:>x</a:>",
            "<é>ü</é>",
            "&#xffffffff;",
        ] {
            let _ = elements(xml, "a");
            let _ = text(xml, "a");
        }
        assert_eq!(text("<a>unclosed", "a"), None);
        assert_eq!(decode("a &bogus; &#65;&#x42; & b"), "a &bogus; AB & b");
        assert_eq!(escape("<a&b>"), "&lt;a&amp;b&gt;");
    }

    #[test]
    fn bounded() {
        let many = "<x>1</x>".repeat(1000);
        assert_eq!(elements(&many, "x").len(), MAX_ELEMENTS);
    }
}
