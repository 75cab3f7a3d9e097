//! Keep going after an error, so one pass reports every problem in every file.
//!
//! The deserializer records each error in its sink at the node where it happened; these helpers then
//! drop the failed element (or optional field) and let the rest of the document be read. This only
//! works because every error is created inside the deserializer (leaf types parse in a `Visitor`, see
//! [`crate::value`]), never after it returned.

use serde::{Deserialize, Deserializer};

struct Recovered<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Recovered<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Recovered(T::deserialize(deserializer).ok()))
    }
}

/// A list whose bad elements are reported and skipped.
pub(crate) fn recover_vec<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let items = Vec::<Recovered<T>>::deserialize(deserializer)?;
    Ok(items.into_iter().filter_map(|r| r.0).collect())
}

/// An optional field whose bad value is reported and treated as absent.
pub(crate) fn recover_opt<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Recovered<T>>::deserialize(deserializer)?.and_then(|r| r.0))
}
