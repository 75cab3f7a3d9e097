//! Which page to request next. The manifest sets at most one of `cursor_field` (the response names
//! a cursor, sent back as a query parameter), `next_link` (the response holds the next page's URL)
//! or `page_param` (pages are numbered from 1 and end at an empty one); without any, the URL is
//! one page.

use switchyard_config::manifest::{PageFormat, Pagination};
use switchyard_config::value::HttpUrl;

use crate::Error;

/// How the API pages, from the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Paging {
    Single,
    Cursor { field: String, param: String },
    NextLink { field: String },
    Number { param: String },
}

impl Paging {
    pub(super) fn from_spec(spec: Option<&Pagination>, format: PageFormat) -> Result<Paging, Error> {
        let Some(p) = spec else { return Ok(Paging::Single) };
        let paging = match (&p.cursor_field, &p.next_link, &p.page_param) {
            (None, None, None) => Paging::Single,
            (Some(field), None, None) => Paging::Cursor {
                field: field.clone(),
                param: p.cursor_param.clone().unwrap_or_else(|| "cursor".into()),
            },
            (None, Some(field), None) => Paging::NextLink { field: field.clone() },
            (None, None, Some(param)) => Paging::Number { param: param.clone() },
            _ => {
                return Err(Error::config(
                    "https source: `pagination` sets more than one of `cursor_field`, `next_link` and `page_param`",
                    "keep the one that matches how the API pages",
                ));
            }
        };
        if p.cursor_param.is_some() && !matches!(paging, Paging::Cursor { .. }) {
            return Err(Error::config(
                "https source: `pagination.cursor_param` is set without `cursor_field`",
                "add `cursor_field` (the response field holding the cursor) or remove `cursor_param`",
            ));
        }
        if format == PageFormat::Ndjson && matches!(paging, Paging::Cursor { .. } | Paging::NextLink { .. }) {
            return Err(Error::config(
                "https source: an NDJSON page has no field for a cursor or next link",
                "page NDJSON by number (`pagination: { page_param: page }`), or use `format: json`",
            ));
        }
        Ok(paging)
    }

    /// The response field that says where the next page is, for the page decoder.
    pub(super) fn next_field(&self) -> Option<&str> {
        match self {
            Paging::Cursor { field, .. } | Paging::NextLink { field } => Some(field),
            Paging::Single | Paging::Number { .. } => None,
        }
    }
}

/// Walks the pages: the number (1-based) and URL of the page to fetch, then what it said next.
#[derive(Debug)]
pub(super) struct Pager {
    paging: Paging,
    base: HttpUrl,
    /// The page to fetch next; `None` once the last page has been fetched.
    next: Option<HttpUrl>,
    number: i64,
    cursor: Option<String>,
}

impl Pager {
    /// Starts at page `first` (above 1 only for numbered pages, which can be addressed directly).
    pub(super) fn new(paging: Paging, base: HttpUrl, first: i64) -> Result<Pager, Error> {
        let next = match &paging {
            Paging::Number { param } => with_param(&base, param, &first.to_string())?,
            _ => base.clone(),
        };
        let number = if matches!(paging, Paging::Number { .. }) { first } else { 1 };
        Ok(Pager { paging, base, next: Some(next), number, cursor: None })
    }

    /// The page to fetch now, or `None` when there are no more.
    pub(super) fn current(&self) -> Option<(i64, &HttpUrl)> {
        self.next.as_ref().map(|url| (self.number, url))
    }

    /// Moves past the current page, given what it said: `next` is its cursor or next link (if
    /// the paging uses one) and `records` how many records it held. `Err` is why the answer
    /// cannot be followed.
    pub(super) fn advance(&mut self, next: Option<&str>, records: usize) -> Result<(), String> {
        let Some(current) = self.next.take() else { return Ok(()) };
        self.next = match (&self.paging, next) {
            (Paging::Single, _) | (Paging::Cursor { .. } | Paging::NextLink { .. }, None) => None,
            (Paging::Cursor { param, .. }, Some(cursor)) => {
                if self.cursor.as_deref() == Some(cursor) {
                    return Err(format!("the API returned the cursor `{cursor}` twice in a row"));
                }
                self.cursor = Some(cursor.to_owned());
                Some(with_param(&self.base, param, cursor).map_err(|e| e.to_string())?)
            }
            (Paging::NextLink { .. }, Some(link)) => Some(self.follow(&current, link)?),
            (Paging::Number { .. }, _) if records == 0 => None,
            (Paging::Number { param }, _) => Some(
                with_param(&self.base, param, &(self.number + 1).to_string()).map_err(|e| e.to_string())?,
            ),
        };
        self.number += 1;
        Ok(())
    }

    /// The next link, resolved against the page that gave it. Only the configured host is
    /// followed: the egress policy and the client identity were chosen for it, and a link
    /// elsewhere is more likely a mistake (or an attack) than a feature.
    fn follow(&self, current: &HttpUrl, link: &str) -> Result<HttpUrl, String> {
        let joined =
            current.as_url().join(link).map_err(|e| format!("the next link `{link}` is not a URL: {e}"))?;
        let next: HttpUrl =
            joined.as_str().parse().map_err(|e: switchyard_config::value::ParseError| e.message)?;
        if next.endpoint() != self.base.endpoint() || next.as_url().scheme() != self.base.as_url().scheme() {
            return Err(format!(
                "the next link points at {}://{}, not at {}://{} where the task is allowed to read",
                next.as_url().scheme(),
                next.endpoint(),
                self.base.as_url().scheme(),
                self.base.endpoint()
            ));
        }
        if next == *current {
            return Err(format!("the next link `{}` is the page itself", redact(&next)));
        }
        Ok(next)
    }
}

/// `url` with query parameter `name` set to `value` (replacing any value it had).
fn with_param(url: &HttpUrl, name: &str, value: &str) -> Result<HttpUrl, Error> {
    let mut u = url.as_url().clone();
    let kept: Vec<(String, String)> =
        u.query_pairs().filter(|(k, _)| k != name).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    u.query_pairs_mut().clear().extend_pairs(kept).append_pair(name, value);
    u.as_str().parse().map_err(|e: switchyard_config::value::ParseError| {
        Error::config(format!("https source: cannot build the page URL: {}", e.message), e.hint)
    })
}

/// A URL for errors and logs: without its query, which may carry keys or cursors.
pub(super) fn redact(url: &HttpUrl) -> String {
    let u = url.as_url();
    let query = if u.query().is_some() { "?…" } else { "" };
    format!("{}://{}{}{query}", u.scheme(), url.endpoint(), u.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> HttpUrl {
        s.parse().unwrap()
    }

    fn cursor() -> Paging {
        Paging::Cursor { field: "next".into(), param: "cursor".into() }
    }

    #[test]
    fn cursor_pages_until_the_cursor_is_missing() {
        let mut p = Pager::new(cursor(), url("https://api.example.com/items?size=10"), 1).unwrap();
        assert_eq!(p.current().unwrap().1.to_string(), "https://api.example.com/items?size=10");
        p.advance(Some("a b"), 10).unwrap();
        let (n, u) = p.current().unwrap();
        assert_eq!((n, u.to_string().as_str()), (2, "https://api.example.com/items?size=10&cursor=a+b"));
        p.advance(Some("c"), 10).unwrap();
        assert!(p.current().unwrap().1.to_string().ends_with("size=10&cursor=c"));
        assert!(p.advance(Some("c"), 10).unwrap_err().contains("twice"));
        let mut p = Pager::new(cursor(), url("https://api.example.com/items"), 1).unwrap();
        p.advance(None, 10).unwrap();
        assert!(p.current().is_none());
    }

    #[test]
    fn next_links_stay_on_the_host() {
        let paging = Paging::NextLink { field: "next".into() };
        let mut p = Pager::new(paging, url("https://api.example.com:8443/v1/items"), 1).unwrap();
        p.advance(Some("items?page=2"), 1).unwrap();
        assert_eq!(p.current().unwrap().1.to_string(), "https://api.example.com:8443/v1/items?page=2");
        p.advance(Some("https://api.example.com:8443/v1/items?page=3"), 1).unwrap();
        let err = p.advance(Some("https://evil.example.net/v1/items?page=4"), 1).unwrap_err();
        assert!(err.contains("evil.example.net:443"), "{err}");
    }

    #[test]
    fn numbered_pages_start_where_asked_and_stop_when_empty() {
        let paging = Paging::Number { param: "page".into() };
        let mut p = Pager::new(paging, url("http://127.0.0.1:8080/x?page=9&q=1"), 3).unwrap();
        assert_eq!(p.current().unwrap().0, 3);
        assert_eq!(p.current().unwrap().1.to_string(), "http://127.0.0.1:8080/x?q=1&page=3");
        p.advance(None, 5).unwrap();
        assert_eq!(p.current().unwrap().0, 4);
        p.advance(None, 0).unwrap();
        assert!(p.current().is_none());
    }

    #[test]
    fn redacts_the_query() {
        assert_eq!(redact(&url("https://h.example.com/a?key=s3cret")), "https://h.example.com:443/a?…");
    }

    #[test]
    fn one_kind_of_paging_and_none_on_ndjson_bodies() {
        let both = Pagination {
            cursor_field: Some("n".into()),
            cursor_param: None,
            next_link: Some("l".into()),
            page_param: None,
        };
        assert!(Paging::from_spec(Some(&both), PageFormat::Json).is_err());
        let cursor = Pagination { next_link: None, ..both };
        assert!(Paging::from_spec(Some(&cursor), PageFormat::Ndjson).is_err());
        assert_eq!(
            Paging::from_spec(Some(&cursor), PageFormat::Json).unwrap(),
            Paging::Cursor { field: "n".into(), param: "cursor".into() }
        );
    }
}
