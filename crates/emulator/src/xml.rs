//! AWS Query (XML) response rendering.

use crate::error::ApiError;

/// Namespace of every Redshift 2012-12-01 response document.
pub(crate) const NAMESPACE: &str = "http://redshift.amazonaws.com/doc/2012-12-01/";
/// Namespace of every STS 2011-06-15 response document.
pub(crate) const STS_NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// Escapes text for use in XML element content and attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all are replaced rather than emitted.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A fresh request id shaped like AWS's (UUID v4 layout).
pub(crate) fn request_id() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!(
        "{}-{}-4{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Wraps a Redshift action's result element in the standard `<XResponse>` envelope.
pub(crate) fn success(action: &str, result_body: &str, request_id: &str) -> String {
    success_in(NAMESPACE, action, result_body, request_id)
}

/// Wraps an action's result element in the `<XResponse>` envelope of namespace `ns`.
pub(crate) fn success_in(ns: &str, action: &str, result_body: &str, request_id: &str) -> String {
    format!(
        "<{action}Response xmlns=\"{ns}\"><{action}Result>{result_body}</{action}Result>\
         <ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{action}Response>",
        escape(request_id)
    )
}

/// Renders a Redshift `<ErrorResponse>` document.
pub(crate) fn error(err: &ApiError, request_id: &str) -> String {
    error_in(NAMESPACE, err, request_id)
}

/// Renders an `<ErrorResponse>` document in namespace `ns`.
pub(crate) fn error_in(ns: &str, err: &ApiError, request_id: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"{ns}\"><Error><Type>{}</Type><Code>{}</Code>\
         <Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        err.fault_type(),
        escape(&err.code),
        escape(&err.message),
        escape(request_id)
    )
}

/// Renders one `<Name>value</Name>` element with the value escaped.
pub(crate) fn element(name: &str, value: &str) -> String {
    format!("<{name}>{}</{name}>", escape(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_replaces_markup_and_control_characters() {
        for (case, input, escaped) in [
            (
                "markup",
                "a<b>&\"c\"'d'",
                "a&lt;b&gt;&amp;&quot;c&quot;&apos;d&apos;",
            ),
            ("plain", "plain/+=", "plain/+="),
            ("control character", "x\u{1}y", "x\u{FFFD}y"),
        ] {
            assert_eq!(escape(input), escaped, "{case}");
        }
    }

    #[test]
    fn a_client_error_is_a_sender_error_document_with_an_escaped_message() {
        let doc = error(&ApiError::cluster_not_found("a<b"), "rid");
        assert_eq!(
            doc,
            "<ErrorResponse xmlns=\"http://redshift.amazonaws.com/doc/2012-12-01/\"><Error>\
             <Type>Sender</Type><Code>ClusterNotFound</Code><Message>Cluster a&lt;b not found.\
             </Message></Error><RequestId>rid</RequestId></ErrorResponse>"
        );
    }

    #[test]
    fn an_internal_error_is_a_receiver_error() {
        let doc = error(&ApiError::internal("boom"), "r");
        assert!(doc.contains("<Type>Receiver</Type>"), "{doc}");
    }

    #[test]
    fn success_wraps_the_result_in_the_action_response_with_the_request_id() {
        let doc = success("DescribeClusters", &element("X", "&"), "id");
        assert!(doc.starts_with(
            "<DescribeClustersResponse xmlns=\"http://redshift.amazonaws.com/doc/2012-12-01/\">\
             <DescribeClustersResult><X>&amp;</X></DescribeClustersResult>"
        ));
        assert!(doc.ends_with(
            "<ResponseMetadata><RequestId>id</RequestId></ResponseMetadata></DescribeClustersResponse>"
        ));
    }

    #[test]
    fn request_ids_are_uuid_shaped() {
        let id = request_id();
        let parts: Vec<_> = id.split('-').map(str::len).collect();
        assert_eq!(parts, vec![8, 4, 4, 4, 12]);
    }
}
