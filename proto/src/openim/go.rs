//! Go's `encoding/json`, as far as an OpenIM answer needs it: the Go types that appear in
//! OpenIM's answer structs, and a decoder that accepts exactly what `json.Unmarshal` accepts
//! into them and returns the value in a canonical form.
//!
//! Canonical means: struct keys spelled as the Go tag spells them, unknown keys gone, `null`
//! where Go leaves a zero value or a nil pointer. A JSON text built from the canonical form
//! decodes in Go to the same struct as the original, and nothing in it depends on how Go
//! folds the case of keys, so OpenIM reads what the gateway read.
//!
//! Where Go and this decoder differ, this decoder is stricter: it matches keys ignoring ASCII
//! case only (Go also folds a few non-ASCII letters; such a key is dropped here, so OpenIM
//! never sees it), and it refuses two keys that differ only in case inside one object (Go
//! keeps the last; the gateway treats the reply as ambiguous).

use serde_json::{Map, Value};

/// A Go type of an OpenIM answer field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoType {
    /// `string`, and `wrapperspb.StringValue` (its decoder takes a JSON string only).
    Str,
    /// `int32`, and `wrapperspb.Int32Value` (`strconv.ParseInt(raw, 10, 32)`: an integer
    /// literal in range; `"5"`, `5.0` and `5e0` fail).
    Int32,
    /// `int64`.
    Int64,
    /// `bool`: `true` or `false`.
    Bool,
    /// `[]byte`: a JSON string holding standard base64, or an array of integers 0 to 255.
    Bytes,
    /// `[]T`: a JSON array; `null` is a nil slice.
    Slice(&'static Self),
    /// `map[string]bool`: a JSON object of booleans; `null` is a nil map.
    BoolMap,
    /// A struct: a JSON object; unknown keys are ignored.
    Struct(&'static [GoField]),
    /// `*T`: `null` is nil, anything else decodes as `T`.
    Ptr(&'static Self),
}

/// One field of a Go struct, named by its JSON tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoField {
    /// The JSON tag.
    pub name: &'static str,
    /// The Go type.
    pub ty: GoType,
}

/// Shorthand for a field in the static tables.
pub const fn field(name: &'static str, ty: GoType) -> GoField {
    GoField { name, ty }
}

/// Why Go's decoder would refuse a value. The path names the value inside the answer
/// (`memberCallbackList[0].userID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A value of the wrong JSON type, or an integer out of range: `json.Unmarshal` fails.
    WrongType {
        /// Where the value is.
        path: String,
        /// What Go accepts there.
        expected: &'static str,
    },
    /// Two keys of one object that Go would both apply to one field.
    DuplicateKey {
        /// Where the second key is.
        path: String,
    },
}

impl DecodeError {
    /// The same error one level up: `segment` is the field name or `[index]` it was under.
    fn under(self, segment: &str) -> Self {
        let join = |path: String| {
            if path.is_empty() {
                segment.to_owned()
            } else if path.starts_with('[') {
                format!("{segment}{path}")
            } else {
                format!("{segment}.{path}")
            }
        };
        match self {
            Self::WrongType { path, expected } => Self::WrongType {
                path: join(path),
                expected,
            },
            Self::DuplicateKey { path } => Self::DuplicateKey { path: join(path) },
        }
    }

    /// Where the offending value is.
    pub fn path(&self) -> &str {
        match self {
            Self::WrongType { path, .. } | Self::DuplicateKey { path } => path,
        }
    }
}

impl GoType {
    /// What a valid value looks like, for error messages.
    pub const fn describe(self) -> &'static str {
        match self {
            Self::Str => "a string or null",
            Self::Int32 => "an integer that fits int32, or null",
            Self::Int64 => "an integer that fits int64, or null",
            Self::Bool => "true, false or null",
            Self::Bytes => "a base64 string, an array of bytes, or null",
            Self::Slice(_) => "an array or null",
            Self::BoolMap => "an object of booleans, or null",
            Self::Struct(_) => "an object or null",
            Self::Ptr(inner) => inner.describe(),
        }
    }

    /// Whether Go keeps a `null` element of a slice of this type as `null` (a nil pointer)
    /// rather than a zero value.
    const fn keeps_null(self) -> bool {
        matches!(self, Self::Ptr(_) | Self::Slice(_) | Self::BoolMap)
    }

    /// The value Go leaves in a non-pointer element that was `null`.
    fn zero(self) -> Value {
        match self {
            Self::Str | Self::Bytes => Value::String(String::new()),
            Self::Int32 | Self::Int64 => Value::from(0),
            Self::Bool => Value::Bool(false),
            Self::Struct(_) => Value::Object(Map::new()),
            Self::Slice(_) | Self::BoolMap | Self::Ptr(_) => Value::Null,
        }
    }
}

/// Decodes `value` into `ty` as `json.Unmarshal` would, returning the canonical form
/// (`null` for a zero or nil field).
pub fn decode(ty: GoType, value: &Value) -> Result<Value, DecodeError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let wrong = || DecodeError::WrongType {
        path: String::new(),
        expected: ty.describe(),
    };
    match ty {
        GoType::Str => value.is_string().then(|| value.clone()).ok_or_else(wrong),
        GoType::Int32 => as_int32(value).map(Value::from).ok_or_else(wrong),
        GoType::Int64 => value.as_i64().map(Value::from).ok_or_else(wrong),
        GoType::Bool => value.is_boolean().then(|| value.clone()).ok_or_else(wrong),
        GoType::Bytes => match value {
            Value::String(text) if is_std_base64(text) => Ok(value.clone()),
            // `[]byte` is a slice too: Go also takes an array of bytes, `null` as 0.
            Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    Value::Null => Some(Value::from(0)),
                    _ => item.as_u64().filter(|byte| *byte <= 255).map(Value::from),
                })
                .collect::<Option<Vec<Value>>>()
                .map(Value::Array)
                .ok_or_else(wrong),
            _ => Err(wrong()),
        },
        GoType::Ptr(inner) => decode(*inner, value),
        GoType::Slice(element) => {
            let Value::Array(items) = value else {
                return Err(wrong());
            };
            let mut out = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let decoded =
                    decode(*element, item).map_err(|error| error.under(&format!("[{index}]")))?;
                out.push(if decoded.is_null() && !element.keeps_null() {
                    element.zero()
                } else {
                    decoded
                });
            }
            Ok(Value::Array(out))
        }
        GoType::BoolMap => {
            let Value::Object(entries) = value else {
                return Err(wrong());
            };
            let mut out = Map::with_capacity(entries.len());
            for (key, item) in entries {
                let decoded = decode(GoType::Bool, item).map_err(|error| error.under(key))?;
                out.insert(key.clone(), decoded_or(decoded, Value::Bool(false)));
            }
            Ok(Value::Object(out))
        }
        GoType::Struct(fields) => {
            let Value::Object(entries) = value else {
                return Err(wrong());
            };
            decode_struct(fields, entries).map(Value::Object)
        }
    }
}

fn decoded_or(decoded: Value, zero: Value) -> Value {
    if decoded.is_null() {
        zero
    } else {
        decoded
    }
}

/// Decodes an object into a struct's fields: each key goes to the field with that tag,
/// else to one whose tag matches ignoring ASCII case; unknown keys are dropped.
pub fn decode_struct(
    fields: &[GoField],
    entries: &Map<String, Value>,
) -> Result<Map<String, Value>, DecodeError> {
    let mut decoded: Vec<Option<Value>> = vec![None; fields.len()];
    for (key, item) in entries {
        let Some(index) = find_field(fields, key) else {
            continue;
        };
        if decoded[index].is_some() {
            return Err(DecodeError::DuplicateKey { path: key.clone() });
        }
        decoded[index] = Some(decode(fields[index].ty, item).map_err(|error| error.under(key))?);
    }
    let mut out = Map::with_capacity(fields.len());
    for (field, value) in fields.iter().zip(decoded) {
        if let Some(value) = value.filter(|value| !value.is_null()) {
            out.insert(field.name.to_owned(), value);
        }
    }
    Ok(out)
}

/// The index of the field `key` names for Go: the exact tag, else a tag equal ignoring
/// ASCII case.
pub fn find_field(fields: &[GoField], key: &str) -> Option<usize> {
    position_by_tag(fields, key, |field| field.name)
}

/// The index of the item whose tag (`tag_of`) `key` names, matched as Go's `encoding/json`
/// matches a key to a struct field: the exact tag first, else one equal ignoring ASCII case.
pub fn position_by_tag<T>(items: &[T], key: &str, tag_of: impl Fn(&T) -> &str) -> Option<usize> {
    items
        .iter()
        .position(|item| tag_of(item) == key)
        .or_else(|| {
            items
                .iter()
                .position(|item| tag_of(item).eq_ignore_ascii_case(key))
        })
}

/// `value` as an int32, when it is an integer literal in range (Go refuses `1.0` for an int).
pub fn as_int32(value: &Value) -> Option<i32> {
    value.as_i64().and_then(|number| i32::try_from(number).ok())
}

/// Whether Go's `base64.StdEncoding` decodes `text` (it skips `\r` and `\n`).
fn is_std_base64(text: &str) -> bool {
    let symbols: Vec<u8> = text
        .bytes()
        .filter(|b| *b != b'\r' && *b != b'\n')
        .collect();
    if symbols.len() % 4 != 0 {
        return false;
    }
    let padding = symbols.iter().rev().take_while(|b| **b == b'=').count();
    if padding > 2 {
        return false;
    }
    symbols[..symbols.len() - padding]
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ITEM: &[GoField] = &[
        field("userID", GoType::Ptr(&GoType::Str)),
        field("roleLevel", GoType::Ptr(&GoType::Int32)),
        field("muteEndTime", GoType::Ptr(&GoType::Int64)),
    ];
    const LIST: GoType = GoType::Slice(&GoType::Ptr(&GoType::Struct(ITEM)));

    #[test]
    fn scalars_are_decoded_as_go_decodes_them() {
        assert!(decode(GoType::Int32, &json!(60)).is_ok());
        assert!(decode(GoType::Int32, &json!(60.0)).is_err());
        assert!(decode(GoType::Int32, &json!("60")).is_err());
        assert!(decode(GoType::Int32, &json!(2_147_483_648_i64)).is_err());
        assert!(decode(GoType::Int64, &json!(2_147_483_648_i64)).is_ok());
        assert!(decode(GoType::Str, &json!(5)).is_err());
        assert!(decode(GoType::Bool, &json!(1)).is_err());
        assert!(decode(GoType::Bytes, &json!("aGk=")).is_ok());
        assert!(decode(GoType::Bytes, &json!("hi!")).is_err());
        // Go decodes an array into `[]byte` element by element (checked with Go 1.19's encoding/json).
        assert_eq!(
            decode(GoType::Bytes, &json!([104, null])),
            Ok(json!([104, 0]))
        );
        assert!(decode(GoType::Bytes, &json!([256])).is_err());
        assert!(decode(GoType::Bytes, &json!([1.5])).is_err());
        assert!(decode(GoType::Bytes, &json!(["a"])).is_err());
        assert_eq!(decode(GoType::Str, &Value::Null), Ok(Value::Null));
    }

    #[test]
    fn arrays_are_checked_element_by_element() {
        let strings = GoType::Slice(&GoType::Str);
        let error = decode(strings, &json!(["a", 2])).unwrap_err();
        assert_eq!(error.path(), "[1]");
        // Go leaves a `null` string element at "".
        assert_eq!(decode(strings, &json!(["a", null])), Ok(json!(["a", ""])));
        // A `null` pointer element stays nil.
        assert_eq!(decode(LIST, &json!([null])), Ok(json!([null])));
    }

    #[test]
    fn structs_take_tags_ignoring_case_and_drop_unknown_keys() {
        let decoded = decode(
            LIST,
            &json!([{"USERID":"u1","nickname":"x","roleLevel":null}]),
        );
        assert_eq!(decoded, Ok(json!([{"userID":"u1"}])));
        let error = decode(LIST, &json!([{"userID":"u1","roleLevel":"60"}])).unwrap_err();
        assert_eq!(error.path(), "[0].roleLevel");
        let twice = decode(LIST, &json!([{"userID":"u1","UserID":"u2"}])).unwrap_err();
        assert!(matches!(twice, DecodeError::DuplicateKey { .. }));
    }

    #[test]
    fn bool_maps_hold_booleans_only() {
        assert!(decode(GoType::BoolMap, &json!({"a":true,"b":null})).is_ok());
        assert!(decode(GoType::BoolMap, &json!({"a":1})).is_err());
        assert!(decode(GoType::BoolMap, &json!([true])).is_err());
    }
}
