//! AMF values written in TOML, for canned results and scenario parameters.
//!
//! Strings, booleans, floats, arrays and tables map to their AMF3 counterparts; integers become
//! integers (the encoder writes those beyond 29 bits as doubles, as Flash does); offset date-times
//! become dates. A
//! table with a `_class` key is a typed object of that class, and `{ _null = true }` is null,
//! which TOML cannot otherwise write.

use toml::Value as Toml;
use toml::value::Datetime;

use crate::codec::{Str, Value};

/// The key that makes a table a typed object.
pub const CLASS_KEY: &str = "_class";
/// The key that makes a table null.
pub const NULL_KEY: &str = "_null";

/// Why a TOML value is not an AMF value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TomlValueError {
    /// A date-time without a time zone offset, which names no instant.
    #[error(
        "{path}: date-time '{value}' has no time zone offset (write e.g. 2026-01-02T03:04:05Z)"
    )]
    LocalDatetime {
        /// Where in the value.
        path: String,
        /// The date-time as written.
        value: String,
    },
    /// `_class` that is not a string.
    #[error("{path}: '{CLASS_KEY}' must be a string naming the class")]
    ClassNotString {
        /// Where in the value.
        path: String,
    },
    /// An empty key, which AMF3 cannot send as a member name (it ends an object's members).
    #[error("{path}: a member name cannot be empty (in AMF3 an empty name ends the members)")]
    EmptyKey {
        /// Where in the value.
        path: String,
    },
    /// `_null` with anything but `true`, or beside other keys.
    #[error("{path}: a null is written {{ {NULL_KEY} = true }} and nothing else")]
    BadNull {
        /// Where in the value.
        path: String,
    },
}

/// Converts `toml`, found at `path` (used in errors, e.g. `commands.login.result`).
pub fn toml_to_value(toml: &Toml, path: &str) -> Result<Value, TomlValueError> {
    Ok(match toml {
        Toml::String(text) => Value::string(text),
        Toml::Integer(n) => Value::number_from_i64(*n),
        Toml::Float(n) => Value::Double(*n),
        Toml::Boolean(b) => Value::Bool(*b),
        Toml::Datetime(datetime) => Value::Date(datetime_ms(datetime, path)?),
        Toml::Array(items) => Value::array(
            items
                .iter()
                .enumerate()
                .map(|(index, item)| toml_to_value(item, &format!("{path}[{index}]")))
                .collect::<Result<_, _>>()?,
        ),
        Toml::Table(table) => table_to_value(table, path)?,
    })
}

/// The class a table names with `_class`, if any.
pub fn class_name<'t>(
    table: &'t toml::Table,
    path: &str,
) -> Result<Option<&'t str>, TomlValueError> {
    match table.get(CLASS_KEY) {
        None => Ok(None),
        Some(Toml::String(name)) => Ok(Some(name)),
        Some(_) => Err(TomlValueError::ClassNotString { path: path.into() }),
    }
}

fn table_to_value(table: &toml::Table, path: &str) -> Result<Value, TomlValueError> {
    if let Some(null) = table.get(NULL_KEY) {
        return match (null, table.len()) {
            (Toml::Boolean(true), 1) => Ok(Value::Null),
            _ => Err(TomlValueError::BadNull { path: path.into() }),
        };
    }
    let class_name = class_name(table, path)?;
    let members = table
        .iter()
        .filter(|(key, _)| key.as_str() != CLASS_KEY)
        .map(|(key, value)| {
            Ok((
                member_name(key, path)?,
                toml_to_value(value, &format!("{path}.{key}"))?,
            ))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(match class_name {
        Some(name) => Value::typed_object(name, members),
        None => Value::object(members),
    })
}

/// A table's key as a member name: any but the empty one.
pub fn member_name(key: &str, path: &str) -> Result<Str, TomlValueError> {
    if key.is_empty() {
        return Err(TomlValueError::EmptyKey {
            path: format!("{path}.\"\""),
        });
    }
    Ok(Str::from(key))
}

/// Milliseconds since the Unix epoch of an offset date-time (or a bare date, taken as UTC midnight).
fn datetime_ms(datetime: &Datetime, path: &str) -> Result<f64, TomlValueError> {
    let local = || TomlValueError::LocalDatetime {
        path: path.into(),
        value: datetime.to_string(),
    };
    let date = datetime.date.ok_or_else(local)?;
    let offset_minutes = match (datetime.time, datetime.offset) {
        (None, None) => 0,
        (Some(_), Some(toml::value::Offset::Z)) => 0,
        (Some(_), Some(toml::value::Offset::Custom { minutes })) => i64::from(minutes),
        _ => return Err(local()),
    };
    let days = days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let (seconds, nanos) = datetime.time.map_or((0, 0), |time| {
        (
            i64::from(time.hour) * 3600
                + i64::from(time.minute) * 60
                + i64::from(time.second.unwrap_or(0)),
            i64::from(time.nanosecond.unwrap_or(0)),
        )
    });
    let ms = (days * 86_400 + seconds - offset_minutes * 60) * 1000 + nanos / 1_000_000;
    Ok(ms as f64)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Value, TomlValueError> {
        let table: toml::Table = text.parse().expect("valid TOML");
        toml_to_value(&table["v"], "v")
    }

    #[test]
    fn scalars_map_to_amf3_types() {
        assert_eq!(parse("v = 5"), Ok(Value::Integer(5)));
        assert_eq!(parse("v = 5000000000"), Ok(Value::Double(5e9)));
        assert_eq!(parse("v = 1.5"), Ok(Value::Double(1.5)));
        assert_eq!(parse("v = 'x'"), Ok(Value::string("x")));
        assert_eq!(
            parse("v = 1970-01-02T00:00:01.5Z"),
            Ok(Value::Date(86_401_500.0))
        );
        assert_eq!(parse("v = 1970-01-01T01:00:00+01:00"), Ok(Value::Date(0.0)));
        assert_eq!(parse("v = 2000-03-01"), Ok(Value::Date(951_868_800_000.0)));
        assert_eq!(parse("v = { _null = true }"), Ok(Value::Null));
    }

    #[test]
    fn tables_become_objects_typed_by_class() {
        let value =
            parse("v = { _class = 'com.example.User', id = 7, tags = ['a'] }").expect("valid");
        let object = value.as_object().expect("an object");
        assert_eq!(&*object.class_name, "com.example.User");
        assert_eq!(object.members.len(), 2);
        assert_eq!(object.get("id"), Some(&Value::Integer(7)));
    }

    #[test]
    fn errors_name_the_place() {
        let error = parse("v = { at = 2026-01-01T00:00:00 }").expect_err("local");
        assert!(error.to_string().starts_with("v.at: date-time"), "{error}");
        assert_eq!(
            parse("v = { _class = 5 }"),
            Err(TomlValueError::ClassNotString { path: "v".into() })
        );
        assert_eq!(
            parse("v = { ok = { \"\" = 1 } }"),
            Err(TomlValueError::EmptyKey {
                path: "v.ok.\"\"".into()
            })
        );
        assert_eq!(
            parse("v = [{ _null = false }]"),
            Err(TomlValueError::BadNull {
                path: "v[0]".into()
            })
        );
    }
}
