//! The AWS query protocol as SNS speaks it: form-encoded parameters in, XML
//! out.

use std::collections::BTreeMap;

/// The parameters of one request (`Action=...&Name=...`), flat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    /// Decode a form-encoded body.
    pub fn parse(body: &[u8]) -> Self {
        Params(form_urlencoded::parse(body).into_owned().collect())
    }

    /// One parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The parameters under `prefix`, with it taken off.
    fn under(&self, prefix: &str) -> Params {
        Params(
            self.0
                .range(prefix.to_owned()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k[prefix.len()..].to_owned(), v.clone()))
                .collect(),
        )
    }

    /// `name.{kind}.1.`, `name.{kind}.2.`, ... until one is missing.
    fn numbered(&self, name: &str, kind: &str) -> impl Iterator<Item = Params> + '_ {
        let (name, kind) = (name.to_owned(), kind.to_owned());
        (1..)
            .map(move |n| self.under(&format!("{name}.{kind}.{n}.")))
            .take_while(|p| !p.0.is_empty())
    }

    /// The members of list `name` (`name.member.1.`, `name.member.2.`, ...),
    /// each with its own parameters, in order.
    pub fn members(&self, name: &str) -> Vec<Params> {
        self.numbered(name, "member").collect()
    }

    /// Map `name` (`name.entry.N.key` and `name.entry.N.value`).
    pub fn map(&self, name: &str) -> BTreeMap<String, String> {
        self.entries(name, "key")
            .into_iter()
            .map(|(k, v)| (k, v.get("value").unwrap_or_default().to_owned()))
            .collect()
    }

    /// Entries of map `name` keyed by their `key_field`, each with its own
    /// parameters (message attributes: `Name`, `Value.DataType`, ...).
    pub fn entries(&self, name: &str, key_field: &str) -> BTreeMap<String, Params> {
        self.numbered(name, "entry")
            .map(|p| (p.get(key_field).unwrap_or_default().to_owned(), p))
            .collect()
    }
}

/// Escape text for an XML element.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// An XML document under construction.
#[derive(Debug, Default)]
pub struct Xml(String);

impl Xml {
    /// `<tag>`, then what `inner` writes, then `</tag>`.
    pub fn node(&mut self, tag: &str, inner: impl FnOnce(&mut Xml)) -> &mut Self {
        self.0.push('<');
        self.0.push_str(tag);
        self.0.push('>');
        inner(self);
        self.0.push_str("</");
        self.0.push_str(tag);
        self.0.push('>');
        self
    }

    /// `<tag>text</tag>`, the text escaped.
    pub fn leaf(&mut self, tag: &str, text: &str) -> &mut Self {
        self.node(tag, |x| x.0.push_str(&escape(text)))
    }

    /// A map as the query protocol writes it: `<entry><key/><value/></entry>`.
    pub fn map(&mut self, tag: &str, m: &BTreeMap<String, String>) -> &mut Self {
        self.node(tag, |x| {
            for (k, v) in m {
                x.node("entry", |e| {
                    e.leaf("key", k).leaf("value", v);
                });
            }
        })
    }
}

/// The namespace of SNS's responses.
pub const XMLNS: &str = "http://sns.amazonaws.com/doc/2010-03-31/";

/// `<{Action}Response><{Action}Result>...</…><ResponseMetadata>…`.
pub fn response(action: &str, request_id: &str, result: impl FnOnce(&mut Xml)) -> String {
    let mut x = Xml::default();
    x.0.push_str(&format!("<{action}Response xmlns=\"{XMLNS}\">"));
    x.node(&format!("{action}Result"), result);
    x.node("ResponseMetadata", |m| {
        m.leaf("RequestId", request_id);
    });
    x.0.push_str(&format!("</{action}Response>"));
    x.0
}

/// An error document.
pub fn error(kind: &str, code: &str, message: &str, request_id: &str) -> String {
    let mut x = Xml::default();
    x.0.push_str(&format!("<ErrorResponse xmlns=\"{XMLNS}\">"));
    x.node("Error", |e| {
        e.leaf("Type", kind).leaf("Code", code).leaf("Message", message);
    });
    x.leaf("RequestId", request_id);
    x.0.push_str("</ErrorResponse>");
    x.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_maps_and_entries_decode() {
        let p = Params::parse(
            b"Action=PublishBatch&TopicArn=arn%3Aaws%3Asns%3Ax&PublishBatchRequestEntries.member.1.Id=a\
              &PublishBatchRequestEntries.member.1.Message=hi%20there\
              &PublishBatchRequestEntries.member.1.MessageAttributes.entry.1.Name=type\
              &PublishBatchRequestEntries.member.1.MessageAttributes.entry.1.Value.DataType=String\
              &PublishBatchRequestEntries.member.1.MessageAttributes.entry.1.Value.StringValue=x\
              &PublishBatchRequestEntries.member.2.Id=b&PublishBatchRequestEntries.member.2.Message=2\
              &Attributes.entry.1.key=RawMessageDelivery&Attributes.entry.1.value=true",
        );
        assert_eq!(p.get("Action"), Some("PublishBatch"));
        assert_eq!(p.get("TopicArn"), Some("arn:aws:sns:x"));
        let m = p.members("PublishBatchRequestEntries");
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].get("Message"), Some("hi there"));
        let attrs = m[0].entries("MessageAttributes", "Name");
        assert_eq!(attrs["type"].get("Value.StringValue"), Some("x"));
        assert_eq!(m[1].get("Id"), Some("b"));
        assert_eq!(p.map("Attributes")["RawMessageDelivery"], "true");
    }

    #[test]
    fn documents_are_escaped() {
        let doc = response("GetTopicAttributes", "r", |x| {
            x.map(
                "Attributes",
                &BTreeMap::from([("Policy".to_owned(), "{\"a\":\"<&>\"}".to_owned())]),
            );
        });
        assert!(
            doc.contains("<value>{&quot;a&quot;:&quot;&lt;&amp;&gt;&quot;}</value>"),
            "{doc}"
        );
        assert!(doc.starts_with("<GetTopicAttributesResponse xmlns="));
        assert!(error("Sender", "NotFound", "a<b", "r").contains("<Message>a&lt;b</Message>"));
    }
}
