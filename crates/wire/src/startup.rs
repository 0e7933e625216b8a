//! A client's startup parameters: the one shape they keep from the startup packet to the
//! pool key (the client's packet, the login plan's forwarded part, a server login's
//! parameters, the pool key's fixed part).

/// Startup parameters as `name = value` pairs, in the order the client sent them (names
/// are unique: the packet parser refuses duplicates).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct StartupParams(Vec<(String, String)>);

impl StartupParams {
    /// The value of `name` (exact, case-sensitive, as PostgreSQL reads the packet).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `user`: who the client says it is.
    pub fn user(&self) -> Option<&str> {
        self.get("user")
    }

    /// `database`, when the client named one (an empty value names none).
    pub fn database(&self) -> Option<&str> {
        self.get("database").filter(|d| !d.is_empty())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Keeps the pairs `keep` accepts, in order; `keep` may rewrite a value.
    pub fn retain_mut(&mut self, keep: impl FnMut(&mut (String, String)) -> bool) {
        self.0.retain_mut(keep);
    }

    /// The pairs `keep` accepts, in order.
    pub fn filtered(&self, mut keep: impl FnMut(&str) -> bool) -> StartupParams {
        StartupParams(self.0.iter().filter(|(k, _)| keep(k)).cloned().collect())
    }

    /// Sorted by name (a pool key's fixed part compares equal whatever order the client used).
    pub fn sorted(mut self) -> StartupParams {
        self.0.sort();
        self
    }
}

impl From<Vec<(String, String)>> for StartupParams {
    fn from(pairs: Vec<(String, String)>) -> StartupParams {
        StartupParams(pairs)
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for StartupParams {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(pairs: I) -> StartupParams {
        StartupParams(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }
}

impl FromIterator<(String, String)> for StartupParams {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(pairs: I) -> StartupParams {
        StartupParams(pairs.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(p: &[(&str, &str)]) -> StartupParams {
        p.iter().copied().collect()
    }

    #[test]
    fn an_empty_database_names_none() {
        assert_eq!(params(&[("database", "")]).database(), None);
        assert_eq!(params(&[("database", "dev")]).database(), Some("dev"));
    }

    #[test]
    fn names_are_read_exactly_as_sent() {
        assert_eq!(params(&[("User", "a")]).user(), None);
        assert_eq!(params(&[("user", "a")]).user(), Some("a"));
    }

    #[test]
    fn sorting_makes_two_orders_of_the_same_pairs_equal() {
        let a = params(&[("b", "1"), ("a", "2")]).sorted();
        let b = params(&[("a", "2"), ("b", "1")]).sorted();
        assert_eq!(a, b);
    }
}
