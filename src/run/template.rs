//! Templated request parameters: AMF values written in TOML whose strings may hold `{{...}}`
//! expressions, rendered afresh for every request.
//!
//! Expressions: `client` (the client's index), `counter` (a per-client count of rendered
//! templates), `random_int(a,b)` (inclusive), `random_hex(n)` (n hex digits), `random_string(n)`
//! (n letters and digits), `pick(a,b,...)` (one of the words), `NAME.COLUMN` (a cell of the CSV
//! file `[csv.NAME]`, the same row for every cell of one request). A string that is exactly one
//! numeric expression (`"{{random_int(1,50)}}"`, `"{{client}}"`) renders as a number; CSV cells
//! stay strings.

use std::num::IntErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::data::CsvTable;
use crate::codec::{Str, Value};
use crate::rpc::toml_value::{
    CLASS_KEY, NULL_KEY, TomlValueError, class_name, member_name, toml_to_value,
};

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A value TOML cannot express as AMF (a local date-time, a bad `_class` or `_null`).
    #[error(transparent)]
    Value(#[from] TomlValueError),
    /// A `{{...}}` expression that does not parse.
    #[error("{path}: {message}")]
    Expression {
        /// Where in the scenario, e.g. `session[0].steps[1].params.user`.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// One `{{...}}` expression.
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Client,
    Counter,
    RandomInt(i64, i64),
    RandomHex(usize),
    RandomString(usize),
    Pick(Vec<String>),
    /// A cell of `sources[source]`.
    Csv {
        source: usize,
        table: Arc<CsvTable>,
        column: usize,
    },
}

impl PartialEq for CsvTable {
    fn eq(&self, other: &CsvTable) -> bool {
        std::ptr::eq(self, other)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Expr(Expr),
}

/// A value with holes, rendered per request.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Node);

#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// No expressions anywhere below: the same value every time.
    Fixed(Value),
    /// A string with expressions.
    Text(Vec<Piece>),
    /// A string that is exactly one expression: numbers stay numbers.
    Whole(Expr),
    /// A dense array.
    Array(Vec<Node>),
    /// An object (typed when the class name is not empty).
    Object(Str, Vec<(Str, Node)>),
}

/// What rendering needs to know about the client.
#[derive(Debug, Default)]
pub struct RenderContext {
    /// The client's index, from 0.
    pub client: u64,
    /// Counts renders by this client, shared by its sessions in flight.
    renders: Arc<AtomicU64>,
    /// This render's count: `{{counter}}`.
    counter: u64,
    /// The CSV row each source gave this render, so that all its cells come from one row.
    rows: Vec<Option<usize>>,
}

impl RenderContext {
    /// The context of client `client`, its counter at 0.
    pub fn new(client: u64) -> RenderContext {
        RenderContext {
            client,
            ..RenderContext::default()
        }
    }

    /// Another context of the same client, sharing its counter (for a session run beside).
    pub fn lane(&self) -> RenderContext {
        RenderContext {
            client: self.client,
            renders: Arc::clone(&self.renders),
            ..RenderContext::default()
        }
    }

    fn row(&mut self, source: usize, table: &CsvTable) -> usize {
        if self.rows.len() <= source {
            self.rows.resize(source + 1, None);
        }
        *self.rows[source].get_or_insert_with(|| table.pick_row(self.client))
    }
}

/// Longest random text an expression may ask for.
const MAX_RANDOM_LEN: usize = 1 << 20;
/// The most text a template's expressions may render for one request: a frame's default cap, as
/// more could not be sent (and a template of many long expressions would take that much memory
/// per request in flight).
const MAX_RENDERED: usize = crate::frame::DEFAULT_MAX_FRAME_LEN;

impl Expr {
    /// The most bytes it renders.
    fn longest(&self) -> usize {
        match self {
            // An i64 or u64 in decimal, sign included.
            Expr::Client | Expr::Counter | Expr::RandomInt(..) => 20,
            Expr::RandomHex(len) | Expr::RandomString(len) => *len,
            Expr::Pick(words) => words.iter().map(String::len).max().unwrap_or(0),
            Expr::Csv { table, column, .. } => table.longest(*column),
        }
    }
}

impl Node {
    /// The most bytes its expressions render (fixed parts are the scenario's own text).
    fn longest(&self) -> usize {
        match self {
            Node::Fixed(_) => 0,
            Node::Text(pieces) => pieces
                .iter()
                .map(|piece| match piece {
                    Piece::Text(text) => text.len(),
                    Piece::Expr(expr) => expr.longest(),
                })
                .fold(0, usize::saturating_add),
            Node::Whole(expr) => expr.longest(),
            Node::Array(items) => items
                .iter()
                .map(Node::longest)
                .fold(0, usize::saturating_add),
            Node::Object(_, members) => members
                .iter()
                .map(|(_, node)| node.longest())
                .fold(0, usize::saturating_add),
        }
    }
}

impl Template {
    /// Parses `toml` found at `path`; `sources` are the scenario's CSV files.
    pub fn parse(
        toml: &toml::Value,
        path: &str,
        sources: &[Arc<CsvTable>],
    ) -> Result<Template, TemplateError> {
        let node = Node::parse(toml, &Scope { path, sources })?;
        let longest = node.longest();
        if longest > MAX_RENDERED {
            return Err(error(
                path,
                &format!(
                    "its expressions can render {longest} bytes, above the {MAX_RENDERED} one \
                     request's params may hold"
                ),
            ));
        }
        Ok(Template(node))
    }

    /// A value for one request.
    pub fn render(&self, context: &mut RenderContext) -> Value {
        context.counter = context.renders.fetch_add(1, Ordering::Relaxed) + 1;
        context.rows.clear();
        self.0.render(context)
    }
}

/// Where a template is being parsed, and what it may refer to.
struct Scope<'a> {
    path: &'a str,
    sources: &'a [Arc<CsvTable>],
}

impl Scope<'_> {
    fn at<'b>(&'b self, path: &'b str) -> Scope<'b> {
        Scope {
            path,
            sources: self.sources,
        }
    }
}

impl Node {
    fn parse(toml: &toml::Value, scope: &Scope) -> Result<Node, TemplateError> {
        let path = scope.path;
        if !has_expression(toml) {
            return Ok(Node::Fixed(toml_to_value(toml, path)?));
        }
        match toml {
            toml::Value::String(text) => parse_text(text, scope),
            toml::Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(index, item)| Node::parse(item, &scope.at(&format!("{path}[{index}]"))))
                .collect::<Result<_, _>>()
                .map(Node::Array),
            toml::Value::Table(table) => {
                // `{ _null = true }` holds no expression, so a table here with `_null` is one
                // of the shapes the fixed values refuse.
                if table.contains_key(NULL_KEY) {
                    return Err(TomlValueError::BadNull { path: path.into() }.into());
                }
                let class = class_name(table, path)?.unwrap_or_default();
                if class.contains("{{") {
                    return Err(error(
                        &format!("{path}.{CLASS_KEY}"),
                        "a class name is fixed: expressions are not rendered in it",
                    ));
                }
                let class = Str::from(class);
                let members = table
                    .iter()
                    .filter(|(key, _)| key.as_str() != CLASS_KEY)
                    .map(|(key, value)| {
                        Ok((
                            member_name(key, path)?,
                            Node::parse(value, &scope.at(&format!("{path}.{key}")))?,
                        ))
                    })
                    .collect::<Result<_, TemplateError>>()?;
                Ok(Node::Object(class, members))
            }
            // Only strings, arrays and tables can hold expressions.
            other => Ok(Node::Fixed(toml_to_value(other, path)?)),
        }
    }

    fn render(&self, context: &mut RenderContext) -> Value {
        match self {
            Node::Fixed(value) => value.clone(),
            Node::Whole(expr) => expr.value(context),
            Node::Text(pieces) => {
                let mut text = String::new();
                for piece in pieces {
                    match piece {
                        Piece::Text(literal) => text.push_str(literal),
                        Piece::Expr(expr) => text.push_str(&expr.text(context)),
                    }
                }
                Value::string(&text)
            }
            Node::Array(items) => {
                Value::array(items.iter().map(|item| item.render(context)).collect())
            }
            Node::Object(class, members) => {
                let members = members
                    .iter()
                    .map(|(name, template)| (name.clone(), template.render(context)))
                    .collect();
                if class.is_empty() {
                    Value::object(members)
                } else {
                    Value::typed_object(class, members)
                }
            }
        }
    }
}

fn error(path: &str, message: &str) -> TemplateError {
    TemplateError::Expression {
        path: path.into(),
        message: message.into(),
    }
}

fn has_expression(toml: &toml::Value) -> bool {
    match toml {
        toml::Value::String(text) => text.contains("{{"),
        toml::Value::Array(items) => items.iter().any(has_expression),
        toml::Value::Table(table) => table.values().any(has_expression),
        _ => false,
    }
}

fn parse_text(text: &str, scope: &Scope) -> Result<Node, TemplateError> {
    let path = scope.path;
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            pieces.push(Piece::Text(rest[..open].to_string()));
        }
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| error(path, &format!("'{{{{' without '}}}}' in \"{text}\"")))?;
        pieces.push(Piece::Expr(parse_expr(after[..close].trim(), scope)?));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_string()));
    }
    Ok(match pieces.as_slice() {
        [Piece::Expr(expr)] if expr.is_numeric() => Node::Whole(expr.clone()),
        _ => Node::Text(pieces),
    })
}

fn parse_expr(expr: &str, scope: &Scope) -> Result<Expr, TemplateError> {
    let path = scope.path;
    let unknown = || {
        error(
            path,
            &format!(
                "unknown expression '{{{{{expr}}}}}'; expected client, counter, random_int(a,b), random_hex(n), random_string(n), pick(a,b,...) or CSV.COLUMN"
            ),
        )
    };
    // A dot before any parenthesis is a CSV cell; one inside a call's arguments is the argument's.
    let dot = expr.find('.');
    let paren = expr.find('(');
    if let Some(dot) = dot.filter(|dot| paren.is_none_or(|paren| *dot < paren)) {
        return csv_cell(expr[..dot].trim(), expr[dot + 1..].trim(), scope);
    }
    let (name, args) = match expr.split_once('(') {
        None => (expr, Vec::new()),
        Some((name, rest)) => {
            let inner = rest.strip_suffix(')').ok_or_else(unknown)?;
            (
                name.trim(),
                inner.split(',').map(|arg| arg.trim().to_string()).collect(),
            )
        }
    };
    // A number whose digits overflow is out of the range each caller states, not "not a number".
    let number = |text: &str| -> Result<Option<i64>, TemplateError> {
        match text.parse::<i64>() {
            Ok(number) => Ok(Some(number)),
            Err(error)
                if matches!(
                    error.kind(),
                    IntErrorKind::PosOverflow | IntErrorKind::NegOverflow
                ) =>
            {
                Ok(None)
            }
            Err(_) => Err(error(
                path,
                &format!("'{text}' in '{{{{{expr}}}}}' is not a whole number"),
            )),
        }
    };
    let bound = |text: &str| -> Result<i64, TemplateError> {
        number(text)?.ok_or_else(|| {
            error(
                path,
                &format!(
                    "'{text}' in '{{{{{expr}}}}}' is out of range; a bound must be {} to {}",
                    i64::MIN,
                    i64::MAX
                ),
            )
        })
    };
    let length = |args: &[String]| -> Result<usize, TemplateError> {
        match args {
            [n] => number(n)?
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n <= MAX_RANDOM_LEN)
                .ok_or_else(|| {
                    error(
                        path,
                        &format!("'{{{{{expr}}}}}': length must be 0 to {MAX_RANDOM_LEN}"),
                    )
                }),
            _ => Err(unknown()),
        }
    };
    match (name, args.as_slice()) {
        ("client", []) => Ok(Expr::Client),
        ("counter", []) => Ok(Expr::Counter),
        ("random_int", [low, high]) => {
            let (low, high) = (bound(low)?, bound(high)?);
            if low > high {
                return Err(error(
                    path,
                    &format!("'{{{{{expr}}}}}': {low} is above {high}"),
                ));
            }
            Ok(Expr::RandomInt(low, high))
        }
        ("random_hex", args) => Ok(Expr::RandomHex(length(args)?)),
        ("random_string", args) => Ok(Expr::RandomString(length(args)?)),
        ("pick", words) if !words.is_empty() && words.iter().all(|w| !w.is_empty()) => {
            Ok(Expr::Pick(words.to_vec()))
        }
        _ => Err(unknown()),
    }
}

/// `NAME.COLUMN`: a cell of a declared CSV file.
fn csv_cell(name: &str, column: &str, scope: &Scope) -> Result<Expr, TemplateError> {
    let Some(source) = scope.sources.iter().position(|table| table.name == name) else {
        let declared: Vec<&str> = scope.sources.iter().map(|t| t.name.as_str()).collect();
        return Err(error(
            scope.path,
            &format!(
                "'{{{{{name}.{column}}}}}': no [csv.{name}] is declared (declared: {})",
                if declared.is_empty() {
                    "none".to_string()
                } else {
                    declared.join(", ")
                }
            ),
        ));
    };
    let table = Arc::clone(&scope.sources[source]);
    let Some(column_index) = table.column(column) else {
        return Err(error(
            scope.path,
            &format!(
                "'{{{{{name}.{column}}}}}': the CSV file has no column '{column}' (columns: {})",
                table.columns.join(", ")
            ),
        ));
    };
    Ok(Expr::Csv {
        source,
        table,
        column: column_index,
    })
}

impl Expr {
    fn is_numeric(&self) -> bool {
        matches!(self, Expr::Client | Expr::Counter | Expr::RandomInt(..))
    }

    fn value(&self, context: &mut RenderContext) -> Value {
        match self {
            Expr::Client => Value::number_from_i64(context.client as i64),
            Expr::Counter => Value::number_from_i64(context.counter as i64),
            Expr::RandomInt(low, high) => Value::number_from_i64(rand::random_range(*low..=*high)),
            _ => Value::string(&self.text(context)),
        }
    }

    fn text(&self, context: &mut RenderContext) -> String {
        const ALPHANUMERIC: &[u8] =
            b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        match self {
            Expr::Client => context.client.to_string(),
            Expr::Counter => context.counter.to_string(),
            Expr::RandomInt(low, high) => rand::random_range(*low..=*high).to_string(),
            Expr::RandomHex(len) => (0..*len)
                .map(|_| char::from(b"0123456789abcdef"[rand::random_range(0..16)]))
                .collect(),
            Expr::RandomString(len) => (0..*len)
                .map(|_| char::from(ALPHANUMERIC[rand::random_range(0..ALPHANUMERIC.len())]))
                .collect(),
            Expr::Pick(words) => words[rand::random_range(0..words.len())].clone(),
            Expr::Csv {
                source,
                table,
                column,
            } => {
                let row = context.row(*source, table);
                table.cell(row, *column).to_string()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(text: &str) -> Result<Template, TemplateError> {
        let table: toml::Table = text.parse().expect("valid TOML");
        Template::parse(&table["p"], "p", &[])
    }

    fn render(template: &Template, client: u64) -> Value {
        template.render(&mut RenderContext::new(client))
    }

    #[test]
    fn expressions_render_per_request() {
        let params = template(
            r#"p = { user = "u{{client}}", token = "{{random_hex(16)}}", id = "{{random_int(1,50)}}", side = "{{pick(red, blue)}}", fixed = 3 }"#,
        )
        .expect("valid");
        let value = render(&params, 7);
        let object = value.as_object().expect("an object");
        assert_eq!(object.get("user").and_then(Value::as_str), Some("u7"));
        let token = object
            .get("token")
            .and_then(Value::as_str)
            .expect("a string");
        assert!(token.len() == 16 && token.bytes().all(|b| b.is_ascii_hexdigit()));
        let id = object.get("id").and_then(Value::as_f64).expect("a number");
        assert!((1.0..=50.0).contains(&id));
        assert!(matches!(
            object.get("side").and_then(Value::as_str),
            Some("red" | "blue")
        ));
        assert_eq!(object.get("fixed"), Some(&Value::Integer(3)));
    }

    #[test]
    fn a_template_that_could_render_more_than_a_frame_holds_is_refused() {
        let many = vec!["\"{{random_string(1048576)}}\""; 17].join(", ");
        let error = template(&format!("p = {{ parts = [{many}] }}")).expect_err("too long");
        assert!(
            error
                .to_string()
                .starts_with("p: its expressions can render 17825792 bytes, above the 16777216"),
            "{error}"
        );
        let sixteen = vec!["\"{{random_string(1048576)}}\""; 16].join(", ");
        assert!(template(&format!("p = {{ parts = [{sixteen}] }}")).is_ok());
    }

    #[test]
    fn picked_words_may_hold_dots() {
        let params = template(
            r#"p = { room = "{{pick(lobby.eu, lobby.us)}}", price = "{{pick(1.5,2.5)}}" }"#,
        )
        .expect("dots inside pick are its words', not a CSV cell's");
        let value = render(&params, 0);
        let object = value.as_object().expect("an object");
        assert!(matches!(
            object.get("room").and_then(Value::as_str),
            Some("lobby.eu" | "lobby.us")
        ));
        assert!(matches!(
            object.get("price").and_then(Value::as_str),
            Some("1.5" | "2.5")
        ));
    }

    #[test]
    fn null_and_class_keys_are_checked_when_the_table_holds_expressions() {
        for (text, said) in [
            (
                r#"p = { x = { _null = true, y = "{{client}}" } }"#,
                "p.x: a null is written",
            ),
            (
                r#"p = { x = { _null = "{{client}}" } }"#,
                "p.x: a null is written",
            ),
            (
                r#"p = { _class = "{{client}}" }"#,
                "p._class: a class name is fixed",
            ),
            (
                r#"p = { _class = 5, y = "{{client}}" }"#,
                "p: '_class' must be a string",
            ),
        ] {
            let error = template(text).expect_err(text).to_string();
            assert!(error.starts_with(said), "{text}: {error}");
        }
    }

    #[test]
    fn typed_objects_and_constants_pass_through() {
        let params = template(r#"p = { _class = "com.example.Login", user = "u{{client}}" }"#)
            .expect("valid");
        let value = render(&params, 1);
        assert_eq!(
            value
                .as_object()
                .map(|o| o.class_name.to_string())
                .as_deref(),
            Some("com.example.Login")
        );
        assert_eq!(
            template("p = [1, 'a']").expect("valid"),
            Template(Node::Fixed(Value::array(vec![
                Value::Integer(1),
                Value::string("a")
            ])))
        );
    }

    #[test]
    fn the_widest_bounds_and_lengths_are_taken() {
        let text = r#"p = { a = "{{random_int(-9223372036854775808,9223372036854775807)}}", b = "{{random_hex(1048576)}}", c = "{{random_string(0)}}" }"#;
        assert!(template(text).is_ok());
    }

    #[test]
    fn bad_expressions_name_the_place() {
        let cases = [
            (
                r#"p = { a = "{{nope}}" }"#,
                "p.a: unknown expression '{{nope}}'",
            ),
            (
                r#"p = { a = "{{random_int(5,1)}}" }"#,
                "p.a: '{{random_int(5,1)}}': 5 is above 1",
            ),
            (
                r#"p = { a = "{{random_hex(x)}}" }"#,
                "'x' in '{{random_hex(x)}}' is not a whole number",
            ),
            (r#"p = ["{{client"]"#, "p[0]: '{{' without '}}'"),
            (
                r#"p = { a = "{{random_string(99999999999999999999)}}" }"#,
                "p.a: '{{random_string(99999999999999999999)}}': length must be 0 to 1048576",
            ),
            (
                r#"p = { a = "{{random_hex(-99999999999999999999)}}" }"#,
                "p.a: '{{random_hex(-99999999999999999999)}}': length must be 0 to 1048576",
            ),
            (
                r#"p = { a = "{{random_string(1048577)}}" }"#,
                "p.a: '{{random_string(1048577)}}': length must be 0 to 1048576",
            ),
            (
                r#"p = { a = "{{random_int(1,9223372036854775808)}}" }"#,
                "p.a: '9223372036854775808' in '{{random_int(1,9223372036854775808)}}' is out of \
                 range; a bound must be -9223372036854775808 to 9223372036854775807",
            ),
            (
                r#"p = { a = "{{random_int(-9223372036854775809,1)}}" }"#,
                "'-9223372036854775809' in '{{random_int(-9223372036854775809,1)}}' is out of \
                 range",
            ),
            (
                r#"p = { a = "{{random_int(1,2x)}}" }"#,
                "'2x' in '{{random_int(1,2x)}}' is not a whole number",
            ),
        ];
        for (text, expected) in cases {
            let message = template(text).expect_err(text).to_string();
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn csv_cells_of_one_request_come_from_one_row() {
        use super::super::data::RowOrder;
        let users = CsvTable::parse(
            "users",
            b"user,password\nann,a1\nbob,b2\n",
            RowOrder::Random,
        )
        .expect("valid");
        let sources = [Arc::new(users)];
        let table: toml::Table =
            r#"p = { user = "{{users.user}}", password = "{{ users.password }}" }"#
                .parse()
                .expect("valid TOML");
        let params = Template::parse(&table["p"], "p", &sources).expect("valid");
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let value = render(&params, 0);
            let object = value.as_object().expect("an object");
            let cell = |name: &str| object.get(name).and_then(Value::as_str).map(str::to_string);
            let pair = (
                cell("user").expect("user"),
                cell("password").expect("password"),
            );
            assert!(
                pair == ("ann".into(), "a1".into()) || pair == ("bob".into(), "b2".into()),
                "{pair:?}"
            );
            seen.insert(pair);
        }
        assert_eq!(seen.len(), 2, "random rows vary between requests");
        for (text, expected) in [
            (
                r#"p = "{{users.email}}""#,
                "the CSV file has no column 'email' (columns: user, password)",
            ),
            (
                r#"p = "{{people.user}}""#,
                "no [csv.people] is declared (declared: users)",
            ),
        ] {
            let table: toml::Table = text.parse().expect("valid TOML");
            let message = Template::parse(&table["p"], "p", &sources)
                .expect_err(text)
                .to_string();
            assert!(message.contains(expected), "{text}: {message}");
        }
    }
}
