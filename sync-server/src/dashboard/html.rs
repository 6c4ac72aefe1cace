//! HTML for the dashboard: escaping (every value goes through [`escape`]), the page
//! frame with its navigation and logout form, and tables.

use std::fmt::Write;

/// `s` safe inside HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:0;color:#222}\
header{background:#243b55;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:center}\
header a{color:#fff}main{padding:16px}table{border-collapse:collapse;margin:8px 0}\
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}td.n{text-align:right}\
.error{color:#b00}form.inline{display:inline}";

/// A whole page. `csrf` is the session's token (the logout form needs it); `None`
/// for the login page, which has no navigation.
pub fn page(title: &str, csrf: Option<&str>, body: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{t} - loyalty HQ</title><style>{STYLE}</style></head><body>",
        t = escape(title)
    );
    if let Some(csrf) = csrf {
        let _ = write!(
            out,
            "<header><strong>loyalty HQ</strong><a href=\"/admin/\">KPIs</a>\
             <a href=\"/admin/cards\">cards</a><a href=\"/admin/terminals\">terminals</a>\
             <a href=\"/admin/flags\">flags</a><a href=\"/admin/overdrafts\">overdrafts</a><a href=\"/admin/quarantine\">quarantine</a>\
             <form class=\"inline\" method=\"post\" action=\"/admin/logout\">{}\
             <button id=\"logout\">log out</button></form></header>",
            csrf_field(csrf)
        );
    }
    let _ = write!(
        out,
        "<main><h1>{}</h1>{body}</main></body></html>",
        escape(title)
    );
    out
}

/// The hidden field every POST form carries.
pub fn csrf_field(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(csrf)
    )
}

/// A table: a header row and rows of already-escaped cells (`td` elements).
pub fn table(headers: &[&str], rows: &[String]) -> String {
    let mut out = String::from("<table><tr>");
    for h in headers {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr>");
    for r in rows {
        let _ = write!(out, "<tr>{r}</tr>");
    }
    out.push_str("</table>");
    out
}

/// A text cell.
pub fn td(s: &str) -> String {
    format!("<td>{}</td>", escape(s))
}

/// A number cell (right-aligned).
pub fn td_num(s: impl std::fmt::Display) -> String {
    format!("<td class=\"n\">{}</td>", escape(&s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_escaped() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let p = page("<t>", Some("tok\""), "<p>body</p>");
        assert!(p.contains("&lt;t&gt;") && p.contains("value=\"tok&quot;\""));
        assert!(p.contains("<p>body</p>"));
        assert!(!page("login", None, "").contains("logout"));
    }
}
