//! `OData` query options as Graph's directory endpoints read them: `$top`, `$select`,
//! `$filter` (a small grammar), `$search`, `$orderby`, `$count`, and the paging and delta
//! tokens ([spec 8]).

use serde_json::Value;

use super::error::GraphError;

/// The query string of one Graph request, decoded.
#[derive(Debug, Default, Clone)]
pub(crate) struct Query {
    pub top: Option<String>,
    pub select: Option<String>,
    pub filter: Option<String>,
    pub search: Option<String>,
    pub orderby: Option<String>,
    pub count: Option<String>,
    pub expand: Option<String>,
    pub skip: Option<String>,
    pub skiptoken: Option<String>,
    pub deltatoken: Option<String>,
    /// Every pair except the paging tokens, in request order, to carry into nextLinks.
    pub carried: Vec<(String, String)>,
}

impl Query {
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        let mut query = Self::default();
        let Some(raw) = raw else { return query };
        for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
            let key = key.into_owned();
            let value = value.into_owned();
            // Graph accepts the options with or without `$`, in any case.
            let name = key.trim_start_matches('$').to_ascii_lowercase();
            let slot = match name.as_str() {
                "top" => &mut query.top,
                "select" => &mut query.select,
                "filter" => &mut query.filter,
                "search" => &mut query.search,
                "orderby" => &mut query.orderby,
                "count" => &mut query.count,
                "expand" => &mut query.expand,
                "skip" => &mut query.skip,
                "skiptoken" => {
                    query.skiptoken = Some(value);
                    continue;
                }
                "deltatoken" => {
                    query.deltatoken = Some(value);
                    continue;
                }
                _ => {
                    query.carried.push((key, value));
                    continue;
                }
            };
            *slot = Some(value.clone());
            query.carried.push((key, value));
        }
        query
    }

    /// `$count=true` was asked for.
    pub(crate) fn count_requested(&self) -> bool {
        self.count
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case("true"))
    }

    /// `$top`, 1..=999 ([spec 8a]: "Invalid page size specified").
    pub(crate) fn page_size(&self, default: usize) -> Result<usize, GraphError> {
        let Some(top) = &self.top else {
            return Ok(default);
        };
        match top.trim().parse::<i64>() {
            Ok(n) if (1..=999).contains(&n) => Ok(usize::try_from(n).unwrap_or(default)),
            _ => Err(GraphError::bad_request(
                "Request_BadRequest",
                format!(
                    "Invalid page size specified: '{top}'. Must be between 1 and 999 inclusive."
                ),
            )),
        }
    }

    /// The `$select` list, validated against the properties of the entity.
    pub(crate) fn selected(
        &self,
        known: &dyn Fn(&str) -> bool,
        type_name: &str,
    ) -> Result<Option<Vec<String>>, GraphError> {
        let Some(select) = &self.select else {
            return Ok(None);
        };
        let mut names = Vec::new();
        for name in select.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !known(name) {
                return Err(GraphError::bad_request(
                    "Request_BadRequest",
                    format!(
                        "Could not find a property named '{name}' on type 'microsoft.graph.{type_name}'."
                    ),
                ));
            }
            if !names.iter().any(|n: &String| n.eq_ignore_ascii_case(name)) {
                names.push(name.to_string());
            }
        }
        Ok(Some(names))
    }
}

/// A literal in a `$filter`.
#[derive(Debug, Clone)]
pub(crate) enum Literal {
    Text(String),
    Bool(bool),
    Null,
    Number(f64),
}

/// Literals are equal when they are the same literal: a `NaN` equals a `NaN` (`OData`
/// writes it as a number, and with `f64`'s own equality a filter holding one would differ
/// from itself), and `0` and `-0` differ as written.
impl PartialEq for Literal {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Text(a), Self::Text(b)) => a == b,
            (Self::Bool(a), Self::Bool(b)) => a == b,
            (Self::Null, Self::Null) => true,
            (Self::Number(a), Self::Number(b)) => {
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Comparison {
    Eq,
    Ne,
    /// `ge`, `gt`, `le`, `lt`: not indexed on the properties simulated here.
    Range,
}

/// A parsed `$filter`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Compare(String, Comparison, Literal),
    StartsWith(String, String),
    EndsWith(String, String),
    In(String, Vec<Literal>),
}

impl Filter {
    /// Whether Graph treats this filter as an advanced query (needs `ConsistencyLevel:
    /// eventual` and `$count=true`): `ne`, `not`, `endsWith` ([spec 8c]).
    pub(crate) fn is_advanced(&self) -> bool {
        match self {
            Self::And(a, b) | Self::Or(a, b) => a.is_advanced() || b.is_advanced(),
            Self::Not(_) | Self::EndsWith(..) | Self::Compare(_, Comparison::Ne, _) => true,
            Self::Compare(..) | Self::StartsWith(..) | Self::In(..) => false,
        }
    }

    /// The prefixes of a filter that is only `startsWith(property, ..)` terms joined by
    /// `or` (how a partitioned listing asks for its range), else `None`.
    pub(crate) fn prefixes_of(&self, property: &str) -> Option<Vec<&str>> {
        match self {
            Self::StartsWith(p, prefix) if p.eq_ignore_ascii_case(property) => {
                Some(vec![prefix.as_str()])
            }
            Self::Or(a, b) => {
                let mut prefixes = a.prefixes_of(property)?;
                prefixes.extend(b.prefixes_of(property)?);
                Some(prefixes)
            }
            _ => None,
        }
    }

    /// Checks every property against the filterable ones.
    pub(crate) fn check(&self, filterable: &dyn Fn(&str) -> bool) -> Result<(), GraphError> {
        match self {
            Self::And(a, b) | Self::Or(a, b) => {
                a.check(filterable)?;
                b.check(filterable)
            }
            Self::Not(a) => a.check(filterable),
            Self::Compare(_, Comparison::Range, _) => Err(not_indexed()),
            Self::Compare(p, ..)
            | Self::StartsWith(p, _)
            | Self::EndsWith(p, _)
            | Self::In(p, _) => {
                if filterable(p) {
                    Ok(())
                } else {
                    Err(not_indexed())
                }
            }
        }
    }

    /// Evaluates the filter with `property` giving an object's property values.
    pub(crate) fn matches(&self, property: &dyn Fn(&str) -> Option<Value>) -> bool {
        match self {
            Self::And(a, b) => a.matches(property) && b.matches(property),
            Self::Or(a, b) => a.matches(property) || b.matches(property),
            Self::Not(a) => !a.matches(property),
            Self::Compare(p, op, literal) => {
                let equal = literal_equals(property(p).as_ref(), literal);
                match op {
                    Comparison::Eq => equal,
                    Comparison::Ne => !equal,
                    Comparison::Range => false,
                }
            }
            Self::StartsWith(p, prefix) => {
                text_of(property(p).as_ref()).is_some_and(|t| starts_with_folded(t, prefix))
            }
            Self::EndsWith(p, suffix) => text_of(property(p).as_ref())
                .is_some_and(|t| t.to_lowercase().ends_with(&suffix.to_lowercase())),
            Self::In(p, values) => {
                let value = property(p);
                values.iter().any(|l| literal_equals(value.as_ref(), l))
            }
        }
    }
}

/// The printer back to `OData` syntax, for the fuzz targets (a parsed filter prints to
/// one that parses equal) and the tests.
#[cfg(any(test, feature = "fuzzing"))]
impl Filter {
    /// This filter as `$filter` text that [`parse_filter`] reads back to an equal filter:
    /// text literals quoted with `''` for a quote, and parentheses only where the grammar
    /// needs them (an `or` inside an `and`, an `and`/`or` on the right of its own kind or
    /// under `not`). Every parenthesis printed stands for one the parsed text had, so the
    /// printed filter nests no deeper and stays within [`MAX_FILTER_DEPTH`].
    pub(crate) fn to_odata(&self) -> String {
        let mut out = String::new();
        self.write_or(&mut out);
        out
    }

    /// An `or` chain (the grammar's top level): `or` is left-associative.
    fn write_or(&self, out: &mut String) {
        if let Self::Or(a, b) = self {
            a.write_or(out);
            out.push_str(" or ");
            b.write_and(out);
        } else {
            self.write_and(out);
        }
    }

    /// An `and` chain of atoms: `and` binds tighter than `or` and is left-associative.
    fn write_and(&self, out: &mut String) {
        if let Self::And(a, b) = self {
            a.write_and(out);
            out.push_str(" and ");
            b.write_atom(out);
        } else {
            self.write_atom(out);
        }
    }

    /// An atom: an `and`/`or` here needs its parentheses; `not` takes an atom.
    fn write_atom(&self, out: &mut String) {
        match self {
            Self::And(..) | Self::Or(..) => {
                out.push('(');
                self.write_or(out);
                out.push(')');
            }
            Self::Not(inner) => {
                out.push_str("not ");
                inner.write_atom(out);
            }
            Self::Compare(property, comparison, literal) => {
                out.push_str(property);
                out.push_str(match comparison {
                    Comparison::Eq => " eq ",
                    Comparison::Ne => " ne ",
                    // The four parse alike (refused as not indexed); one stands for them.
                    Comparison::Range => " ge ",
                });
                literal.write(out);
            }
            Self::StartsWith(property, text) | Self::EndsWith(property, text) => {
                out.push_str(if matches!(self, Self::StartsWith(..)) {
                    "startswith("
                } else {
                    "endswith("
                });
                out.push_str(property);
                out.push(',');
                write_text(text, out);
                out.push(')');
            }
            Self::In(property, values) => {
                out.push_str(property);
                out.push_str(" in (");
                for (index, value) in values.iter().enumerate() {
                    if index > 0 {
                        out.push_str(", ");
                    }
                    value.write(out);
                }
                out.push(')');
            }
        }
    }
}

#[cfg(any(test, feature = "fuzzing"))]
impl Literal {
    /// The literal as one token: `f64`'s `Display` is the shortest text that reads back
    /// to the same number (never an exponent, never a space), `NaN` and `inf` included.
    fn write(&self, out: &mut String) {
        match self {
            Self::Text(text) => write_text(text, out),
            Self::Bool(true) => out.push_str("true"),
            Self::Bool(false) => out.push_str("false"),
            Self::Null => out.push_str("null"),
            Self::Number(number) => out.push_str(&number.to_string()),
        }
    }
}

/// A text literal: quoted, a quote inside doubled.
#[cfg(any(test, feature = "fuzzing"))]
fn write_text(text: &str, out: &mut String) {
    out.push('\'');
    out.push_str(&text.replace('\'', "''"));
    out.push('\'');
}

/// Whether `text` starts with `prefix`, case folded: directory string comparisons ignore
/// case (Microsoft's sample answers `startswith(displayName,'a')` with "AAD Contoso
/// Users", user-list-memberof.md Example 5). ASCII is compared without allocating.
pub(crate) fn starts_with_folded(text: &str, prefix: &str) -> bool {
    if prefix.is_ascii() {
        return text
            .as_bytes()
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()));
    }
    text.to_lowercase().starts_with(&prefix.to_lowercase())
}

fn not_indexed() -> GraphError {
    // The wording of error-filter-property-not-indexed.json.
    GraphError::bad_request(
        "Request_UnsupportedQuery",
        "The request uses a filter property that is not indexed",
    )
}

fn text_of(value: Option<&Value>) -> Option<&str> {
    match value {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

fn literal_equals(value: Option<&Value>, literal: &Literal) -> bool {
    match (value, literal) {
        (Some(Value::String(s)), Literal::Text(t)) => s.eq_ignore_ascii_case(t),
        (Some(Value::Bool(b)), Literal::Bool(l)) => b == l,
        (None | Some(Value::Null), Literal::Null) => true,
        (Some(Value::Number(n)), Literal::Number(l)) => {
            n.as_f64().is_some_and(|n| (n - l).abs() < f64::EPSILON)
        }
        _ => false,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Open,
    Close,
    Comma,
}

/// A token as an error message names it (the text, not the parser's debug form).
fn describe(token: Option<&Token>) -> String {
    match token {
        None => "end of input".into(),
        Some(Token::Word(word)) => format!("'{}'", shortened(word)),
        Some(Token::Text(text)) => format!("string '{}'", shortened(text)),
        Some(Token::Open) => "'('".into(),
        Some(Token::Close) => "')'".into(),
        Some(Token::Comma) => "','".into(),
    }
}

/// At most 40 characters of hostile input go back in a message.
fn shortened(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(40).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

fn syntax(message: impl Into<String>) -> GraphError {
    GraphError::bad_request(
        "BadRequest",
        format!("Invalid filter clause: {}", message.into()),
    )
}

fn tokenize(input: &str) -> Result<Vec<Token>, GraphError> {
    let mut tokens = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            // Any whitespace separates tokens (a word ends at any of it, so skipping only
            // some would leave the loop on the same character for good).
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                tokens.push(Token::Open);
            }
            ')' => {
                chars.next();
                tokens.push(Token::Close);
            }
            ',' => {
                chars.next();
                tokens.push(Token::Comma);
            }
            '\'' => {
                chars.next();
                let mut text = String::new();
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            text.push('\'');
                        }
                        Some('\'') => break,
                        Some(other) => text.push(other),
                        None => return Err(syntax("unterminated string literal")),
                    }
                }
                tokens.push(Token::Text(text));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '(' | ')' | ',' | '\'') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

/// Deepest nesting of parentheses and `not` a `$filter` may have: the parser, the
/// evaluator and `Drop` recurse once per level, so a hostile filter must not be able to
/// overflow the stack.
const MAX_FILTER_DEPTH: usize = 32;
/// Most `and` / `or` operators in one `$filter` (each adds a level to the tree).
const MAX_FILTER_OPERATORS: usize = 200;

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
    operators: usize,
}

impl Parser {
    fn peek_word(&self, word: &str) -> bool {
        matches!(self.tokens.get(self.at), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn expect(&mut self, token: &Token) -> Result<(), GraphError> {
        if self.next().as_ref() == Some(token) {
            Ok(())
        } else {
            Err(syntax(format!("expected {}", describe(Some(token)))))
        }
    }

    fn operator(&mut self) -> Result<(), GraphError> {
        self.at += 1;
        self.operators += 1;
        if self.operators > MAX_FILTER_OPERATORS {
            return Err(syntax("too many clauses"));
        }
        Ok(())
    }

    /// Parses `inner` one nesting level deeper.
    fn nested<T>(
        &mut self,
        inner: impl FnOnce(&mut Self) -> Result<T, GraphError>,
    ) -> Result<T, GraphError> {
        if self.depth >= MAX_FILTER_DEPTH {
            return Err(syntax("nested too deeply"));
        }
        self.depth += 1;
        let result = inner(self);
        self.depth -= 1;
        result
    }

    fn or(&mut self) -> Result<Filter, GraphError> {
        let mut left = self.and()?;
        while self.peek_word("or") {
            self.operator()?;
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, GraphError> {
        let mut left = self.atom()?;
        while self.peek_word("and") {
            self.operator()?;
            left = Filter::And(Box::new(left), Box::new(self.atom()?));
        }
        Ok(left)
    }

    fn literal(&mut self) -> Result<Literal, GraphError> {
        match self.next() {
            Some(Token::Text(t)) => Ok(Literal::Text(t)),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("true") => Ok(Literal::Bool(true)),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("false") => Ok(Literal::Bool(false)),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("null") => Ok(Literal::Null),
            Some(Token::Word(w)) => w
                .parse::<f64>()
                .map(Literal::Number)
                .map_err(|_| syntax(format!("bad literal {w}"))),
            other => Err(syntax(format!(
                "expected a literal, found {}",
                describe(other.as_ref())
            ))),
        }
    }

    fn atom(&mut self) -> Result<Filter, GraphError> {
        match self.next() {
            Some(Token::Open) => {
                let inner = self.nested(Self::or)?;
                self.expect(&Token::Close)?;
                Ok(inner)
            }
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("not") => {
                Ok(Filter::Not(Box::new(self.nested(Self::atom)?)))
            }
            Some(Token::Word(w))
                if w.eq_ignore_ascii_case("startswith") || w.eq_ignore_ascii_case("endswith") =>
            {
                self.expect(&Token::Open)?;
                let Some(Token::Word(property)) = self.next() else {
                    return Err(syntax("expected a property"));
                };
                self.expect(&Token::Comma)?;
                let Some(Token::Text(text)) = self.next() else {
                    return Err(syntax("expected a string"));
                };
                self.expect(&Token::Close)?;
                Ok(if w.eq_ignore_ascii_case("startswith") {
                    Filter::StartsWith(property, text)
                } else {
                    Filter::EndsWith(property, text)
                })
            }
            Some(Token::Word(property)) => {
                let Some(Token::Word(op)) = self.next() else {
                    return Err(syntax("expected an operator"));
                };
                match op.to_ascii_lowercase().as_str() {
                    "eq" => Ok(Filter::Compare(property, Comparison::Eq, self.literal()?)),
                    "ne" => Ok(Filter::Compare(property, Comparison::Ne, self.literal()?)),
                    "ge" | "gt" | "le" | "lt" => Ok(Filter::Compare(
                        property,
                        Comparison::Range,
                        self.literal()?,
                    )),
                    "in" => {
                        self.expect(&Token::Open)?;
                        let mut values = vec![self.literal()?];
                        while self.tokens.get(self.at) == Some(&Token::Comma) {
                            self.at += 1;
                            values.push(self.literal()?);
                        }
                        self.expect(&Token::Close)?;
                        Ok(Filter::In(property, values))
                    }
                    other => Err(syntax(format!("unsupported operator {other}"))),
                }
            }
            other => Err(syntax(format!("unexpected {}", describe(other.as_ref())))),
        }
    }
}

/// Parses a `$filter` expression: `eq`/`ne`/`in`, `startswith`/`endswith`, `and`/`or`/`not`,
/// parentheses; range operators parse but are refused as not indexed.
pub(crate) fn parse_filter(input: &str) -> Result<Filter, GraphError> {
    let mut parser = Parser {
        tokens: tokenize(input)?,
        at: 0,
        depth: 0,
        operators: 0,
    };
    let filter = parser.or()?;
    if parser.at < parser.tokens.len() {
        return Err(syntax("trailing input"));
    }
    Ok(filter)
}

/// A parsed `$search`: `"property:words"` clauses joined by `OR` / `AND`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Search {
    /// Disjunction of conjunctions of (property, text).
    any_of: Vec<Vec<(String, String)>>,
}

impl Search {
    pub(crate) fn parse(
        input: &str,
        searchable: &dyn Fn(&str) -> bool,
    ) -> Result<Self, GraphError> {
        let invalid = || {
            GraphError::bad_request(
                "Request_UnsupportedQuery",
                format!("Invalid search query: {input}"),
            )
        };
        let mut any_of = vec![Vec::new()];
        let mut rest = input.trim();
        loop {
            let Some(stripped) = rest.strip_prefix('"') else {
                return Err(invalid());
            };
            let Some(end) = stripped.find('"') else {
                return Err(invalid());
            };
            let clause = &stripped[..end];
            let Some((property, text)) = clause.split_once(':') else {
                return Err(invalid());
            };
            if !searchable(property) {
                return Err(invalid());
            }
            if let Some(last) = any_of.last_mut() {
                last.push((property.to_string(), text.to_lowercase()));
            }
            rest = stripped[end + 1..].trim_start();
            if rest.is_empty() {
                break;
            }
            let (word, after) = rest.split_once(char::is_whitespace).ok_or_else(invalid)?;
            if word.eq_ignore_ascii_case("or") {
                any_of.push(Vec::new());
            } else if !word.eq_ignore_ascii_case("and") {
                return Err(invalid());
            }
            rest = after.trim_start();
        }
        Ok(Self { any_of })
    }

    /// Graph's directory search is tokenized: a clause matches when a word of the
    /// property starts with the clause's text.
    pub(crate) fn matches(&self, property: &dyn Fn(&str) -> Option<Value>) -> bool {
        self.any_of.iter().any(|all| {
            all.iter().all(|(p, text)| {
                let Some(Value::String(value)) = property(p) else {
                    return false;
                };
                let value = value.to_lowercase();
                value.starts_with(text.as_str())
                    || value
                        .split(|c: char| !c.is_alphanumeric())
                        .any(|word| word.starts_with(text.as_str()))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props(name: &str) -> Option<Value> {
        match name {
            "displayName" => Some(json!("Oscar Ward")),
            "accountEnabled" => Some(json!(true)),
            "userType" => Some(json!("Member")),
            "id" => Some(json!("abc")),
            "mail" => Some(json!("oscar@contoso.com")),
            _ => None,
        }
    }

    #[test]
    fn deeply_nested_or_very_long_filters_are_refused_not_a_stack_overflow() {
        // A hostile `$filter` of nested parentheses or `not`s, or a very long `or` chain,
        // would recurse once per level in the parser, the evaluator and `Drop`, and
        // overflow the worker's stack (an abort, not even a catchable panic).
        for text in [
            format!(
                "{}accountEnabled eq true{}",
                "(".repeat(100_000),
                ")".repeat(100_000)
            ),
            format!("{}(accountEnabled eq true)", "not ".repeat(100_000)),
            vec!["accountEnabled eq true"; 100_000].join(" or "),
        ] {
            let error = parse_filter(&text).err();
            assert_eq!(
                error.map(|e| (e.status(), e.code())),
                Some((
                    axum::http::StatusCode::BAD_REQUEST,
                    "BadRequest".to_string()
                )),
            );
        }
        // Nesting and chains of an ordinary size still parse.
        let nested = format!("{}accountEnabled eq true{}", "(".repeat(20), ")".repeat(20));
        assert!(parse_filter(&nested).is_ok());
        assert!(parse_filter(&vec!["id eq 'a'"; 50].join(" or ")).is_ok());
    }

    #[test]
    fn parses_and_evaluates_the_supported_filters() {
        let cases = [
            ("accountEnabled eq true", true),
            ("accountEnabled eq false", false),
            ("userType eq 'Guest'", false),
            ("userType eq 'member'", true),
            ("startswith(displayName,'osc')", true),
            ("startswith(displayName, 'Ward')", false),
            ("id in ('x', 'abc')", true),
            ("id in ('x')", false),
            (
                "accountEnabled eq true and startswith(displayName,'O')",
                true,
            ),
            ("userType eq 'Guest' or (id eq 'abc')", true),
            ("not(accountEnabled eq true)", false),
            ("endswith(mail,'@contoso.com')", true),
            ("displayName ne 'Oscar Ward'", false),
        ];
        for (text, expected) in cases {
            let filter = parse_filter(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            assert_eq!(filter.matches(&props), expected, "{text}");
        }
    }

    #[test]
    fn any_whitespace_separates_tokens() {
        // A newline, a carriage return or a no-break space once left the tokenizer on the
        // same character for good, pushing empty words until memory ran out: `GET
        // /v1.0/users?$filter=%0A` hung a worker (found by fuzzing, fuzz/README.md).
        for text in ["\n", "\r\n", "\u{a0}", "\u{2003}\u{3000}"] {
            assert!(parse_filter(text).is_err(), "{text:?} alone is no filter");
        }
        let filter = parse_filter("accountEnabled\neq\r\ntrue\u{a0}and\u{3000}id eq 'abc'")
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(filter.matches(&props));
        let filter = parse_filter("accountEnabled\neq\nfalse").unwrap_or_else(|e| panic!("{e:?}"));
        assert!(!filter.matches(&props));
    }

    /// `text` parsed, printed and parsed again: the two filters are equal. The printed
    /// text.
    fn round_trip(text: &str) -> String {
        let filter = parse_filter(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"));
        let printed = filter.to_odata();
        let again = parse_filter(&printed)
            .unwrap_or_else(|e| panic!("{printed:?} (printed from {text:?}): {e:?}"));
        assert_eq!(again, filter, "{text:?} printed as {printed:?}");
        printed
    }

    #[test]
    fn every_supported_filter_prints_back_to_an_equal_filter() {
        for text in [
            "accountEnabled eq true",
            "accountEnabled eq false",
            "userType eq 'Guest'",
            "startswith(displayName,'osc')",
            "startswith(displayName, 'Ward')",
            "id in ('x', 'abc')",
            "id in ('x')",
            "accountEnabled eq true and startswith(displayName,'O')",
            "userType eq 'Guest' or (id eq 'abc')",
            "not(accountEnabled eq true)",
            "endswith(mail,'@contoso.com')",
            "displayName ne 'Oscar Ward'",
            "id ge '1'",
            "skills eq 'x'",
            "manager eq null",
            "employeeId in (12, -3.5, 1e3, true, null, 'x')",
            "accountEnabled\neq\r\ntrue\u{a0}and\u{3000}id eq 'abc'",
        ] {
            round_trip(text);
        }
        assert_eq!(
            round_trip("AccountEnabled EQ TRUE AND NOT StartsWith(displayName,'a')"),
            "AccountEnabled eq true and not startswith(displayName,'a')"
        );
        assert_eq!(
            round_trip("employeeId in (12, -3.5, 1e3)"),
            "employeeId in (12, -3.5, 1000)"
        );
    }

    #[test]
    fn printed_text_literals_double_their_quotes() {
        assert_eq!(
            round_trip("displayName eq 'O''Brien'"),
            "displayName eq 'O''Brien'"
        );
        assert_eq!(
            round_trip("startswith(displayName,'it''s (a, b) or ''c''')"),
            "startswith(displayName,'it''s (a, b) or ''c''')"
        );
        assert_eq!(round_trip("id in ('''', '')"), "id in ('''', '')");
        let filter = Filter::Compare("mail".into(), Comparison::Eq, Literal::Text("'".into()));
        assert_eq!(filter.to_odata(), "mail eq ''''");
        assert_eq!(parse_filter(&filter.to_odata()).ok(), Some(filter));
    }

    #[test]
    fn printed_and_or_not_keep_their_grouping() {
        for (text, printed) in [
            // `and` binds tighter than `or`: no parentheses needed either way.
            ("a eq 1 and b eq 2 or c eq 3", "a eq 1 and b eq 2 or c eq 3"),
            ("a eq 1 or b eq 2 and c eq 3", "a eq 1 or b eq 2 and c eq 3"),
            (
                "(a eq 1 and b eq 2) or c eq 3",
                "a eq 1 and b eq 2 or c eq 3",
            ),
            // An `or` inside an `and`, and a right-hand chain of the same operator.
            (
                "(a eq 1 or b eq 2) and c eq 3",
                "(a eq 1 or b eq 2) and c eq 3",
            ),
            (
                "a eq 1 and (b eq 2 or c eq 3)",
                "a eq 1 and (b eq 2 or c eq 3)",
            ),
            (
                "a eq 1 or (b eq 2 or c eq 3)",
                "a eq 1 or (b eq 2 or c eq 3)",
            ),
            (
                "a eq 1 and (b eq 2 and c eq 3)",
                "a eq 1 and (b eq 2 and c eq 3)",
            ),
            ("(a eq 1 or b eq 2) or c eq 3", "a eq 1 or b eq 2 or c eq 3"),
            // `not` takes an atom: a chain under it keeps its parentheses.
            ("not (a eq 1 and b eq 2)", "not (a eq 1 and b eq 2)"),
            ("not (a eq 1 or b eq 2)", "not (a eq 1 or b eq 2)"),
            ("not(a eq 1)", "not a eq 1"),
            ("not not startswith(p,'x')", "not not startswith(p,'x')"),
            (
                "((a eq 1 or not (b ne 2 and c in (3, 4))) and endswith(d,'e')) or f eq null",
                "(a eq 1 or not (b ne 2 and c in (3, 4))) and endswith(d,'e') or f eq null",
            ),
            // Words that are operators elsewhere stay property names where they were.
            (
                "and eq 1 and or eq 2 or in in (1)",
                "and eq 1 and or eq 2 or in in (1)",
            ),
        ] {
            assert_eq!(round_trip(text), printed, "{text}");
        }
    }

    #[test]
    fn printed_filters_nest_no_deeper_than_the_parsed_ones() {
        // 16 levels of `not (x or ...)`: 32 levels deep, the most the parser takes, and
        // every parenthesis is needed.
        let mut text = "a eq 1".to_owned();
        for _ in 0..16 {
            text = format!("not (b eq 2 or {text})");
        }
        assert_eq!(round_trip(&text), text);
        assert!(parse_filter(&format!("not ({text})")).is_err());
        // 32 `not`s, and the longest chains of operators.
        round_trip(&format!("{}a eq 1", "not ".repeat(32)));
        round_trip(&vec!["id eq 'a'"; 201].join(" and "));
        round_trip(&vec!["(id eq 'a' or id eq 'b')"; 67].join(" and "));
    }

    #[test]
    fn number_literals_are_equal_when_written_alike() {
        for text in ["x eq NaN", "x eq -nan", "x in (inf, -infinity)", "x eq -0"] {
            round_trip(text);
        }
        assert_eq!(parse_filter("x eq NaN").ok(), parse_filter("x eq nan").ok());
        assert_ne!(parse_filter("x eq 0").ok(), parse_filter("x eq -0").ok());
        assert_eq!(
            parse_filter("x eq 1.50").ok(),
            parse_filter("x eq 1.5").ok()
        );
    }

    #[test]
    fn advanced_filters_are_recognised() {
        assert!(parse_filter("endswith(mail,'x')").is_ok_and(|f| f.is_advanced()));
        assert!(parse_filter("not(accountEnabled eq true)").is_ok_and(|f| f.is_advanced()));
        assert!(parse_filter("displayName ne 'a'").is_ok_and(|f| f.is_advanced()));
        assert!(parse_filter("startswith(displayName,'a')").is_ok_and(|f| !f.is_advanced()));
    }

    #[test]
    fn range_operators_and_unknown_properties_are_not_indexed() {
        let filter = parse_filter("id ge '1'").unwrap_or_else(|e| panic!("{e:?}"));
        let err = filter.check(&|_| true).err();
        assert_eq!(
            err.map(|e| e.code()),
            Some("Request_UnsupportedQuery".to_string())
        );
        let filter = parse_filter("skills eq 'x'").unwrap_or_else(|e| panic!("{e:?}"));
        assert!(filter.check(&|p| p == "id").is_err());
    }

    #[test]
    fn malformed_filters_are_bad_requests() {
        for text in [
            "",
            "displayName eq",
            "startswith(displayName 'a')",
            "id in ('a'",
            "a eq 'b' c",
        ] {
            assert!(parse_filter(text).is_err(), "{text}");
        }
    }

    #[test]
    fn search_matches_word_prefixes_with_or() {
        let search = Search::parse("\"displayName:wa\" OR \"displayName:zz\"", &|p| {
            p == "displayName"
        })
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(search.matches(&props));
        let search = Search::parse("\"displayName:ard\"", &|p| p == "displayName")
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(!search.matches(&props));
        assert!(Search::parse("wa", &|_| true).is_err());
        assert!(Search::parse("\"skills:wa\"", &|p| p == "displayName").is_err());
    }

    #[test]
    fn top_outside_1_to_999_is_refused_with_graphs_message() {
        for (raw, ok) in [
            ("$top=1", true),
            ("$top=999", true),
            ("$top=1000", false),
            ("$top=0", false),
            ("$top=x", false),
        ] {
            let query = Query::parse(Some(raw));
            assert_eq!(query.page_size(100).is_ok(), ok, "{raw}");
        }
        let err = Query::parse(Some("$top=1000"))
            .page_size(100)
            .err()
            .map(|e| e.message().to_string());
        assert_eq!(
            err.as_deref(),
            Some("Invalid page size specified: '1000'. Must be between 1 and 999 inclusive.")
        );
    }

    #[test]
    fn query_keeps_options_for_next_links_but_not_tokens() {
        let query = Query::parse(Some(
            "$top=5&%24select=id&$skiptoken=abc&ConsistencyLevel=eventual",
        ));
        assert_eq!(query.top.as_deref(), Some("5"));
        assert_eq!(query.select.as_deref(), Some("id"));
        assert_eq!(query.skiptoken.as_deref(), Some("abc"));
        let keys: Vec<_> = query.carried.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["$top", "$select", "ConsistencyLevel"]);
    }
}
