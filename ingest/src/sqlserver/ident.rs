//! Names and text as T-SQL writes them, for the statements this source builds: shared by the
//! query wrapper, the column description and the hints that suggest a cast.

/// `name` as a bracketed identifier (`]` doubled).
pub(crate) fn quote_ident(name: &str) -> String {
    format!("[{}]", name.replace(']', "]]"))
}

/// `text` as an N'…' literal (`'` doubled).
pub(crate) fn quote_text(text: &str) -> String {
    format!("N'{}'", text.replace('\'', "''"))
}
