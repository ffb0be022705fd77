//! Go's `encoding/json`, as far as an OpenIM answer needs it: the Go types that appear in
//! OpenIM's answer structs, and a decoder that accepts exactly what `json.Unmarshal` accepts
//! into them and returns the value in a canonical form.
//!
//! The decoder reads the JSON text itself, key by key in the order written, as Go does: a
//! key written twice (or two spellings Go takes for one field, `nickName` and `NickName`)
//! is decoded twice into the same field, so the last one wins, an object or a list is merged
//! into what the field already holds as Go merges it, and a value of the wrong type fails
//! the whole decode even when a later key replaces it. A map of the parsed text would keep
//! one value per key and lose that.
//!
//! Canonical means: struct keys spelled as the Go tag spells them, unknown keys gone, `null`
//! where Go leaves a zero value or a nil pointer. A JSON text built from the canonical form
//! decodes in Go to the same struct as the original, and nothing in it depends on how Go
//! folds the case of keys or applies repeated ones, so OpenIM reads what the gateway read.
//!
//! Like Go, it takes an escaped UTF-16 surrogate that is not half of a pair (`"\ud800"`) as
//! U+FFFD, skips values under unknown keys without converting them (`1e400` is fine there),
//! and refuses text nested deeper than 10000 ([`MAX_DEPTH`]).
//!
//! Where Go and this decoder differ, this decoder is stricter: strings must be valid UTF-8
//! (Go replaces bad bytes with U+FFFD), and a number beyond `f64` where Go expects a string,
//! a boolean, a list or an object fails as not JSON (Go: a wrong type; both refuse). The
//! top-level `null` Go decodes as "nothing set" is left to the caller ([`decode_object`]
//! refuses it as not an object).

use std::{borrow::Cow, fmt};

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
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
        let Self::WrongType { path, expected } = self;
        Self::WrongType {
            path: join(path),
            expected,
        }
    }

    /// Where the offending value is.
    pub fn path(&self) -> &str {
        let Self::WrongType { path, .. } = self;
        path
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
/// (`null` for a zero or nil value).
pub fn decode(ty: GoType, value: &Value) -> Result<Value, DecodeError> {
    let text = value.to_string();
    let mut slot = Slot::Zero;
    let mut ctx = Ctx::default();
    let mut reader = serde_json::Deserializer::from_str(&text);
    let parsed = ValueSeed {
        ty,
        slot: &mut slot,
        ctx: &mut ctx,
    }
    .deserialize(&mut reader);
    if let Some(error) = ctx.error {
        return Err(error);
    }
    // Only nesting deeper than the parser's limit fails here; Go refuses it too, past its own.
    parsed.map_err(|_| DecodeError::WrongType {
        path: String::new(),
        expected: ty.describe(),
    })?;
    Ok(slot.canonical(ty))
}

/// Decodes an object into a struct's fields, as [`decode_object`] does, and returns the
/// fields that hold a value, spelled as their tags.
pub fn decode_struct(
    fields: &[GoField],
    entries: &Map<String, Value>,
) -> Result<Map<String, Value>, DecodeError> {
    let text = serde_json::to_vec(entries).unwrap_or_default();
    let decoded = decode_object(&text, &fields).map_err(|error| match error {
        ObjectError::Type(error) => error,
        ObjectError::NotJson(_) | ObjectError::NotObject => DecodeError::WrongType {
            path: String::new(),
            expected: "an object",
        },
    })?;
    Ok(fields
        .iter()
        .zip(decoded.values)
        .filter(|(_, value)| !value.is_null())
        .map(|(field, value)| (field.name.to_owned(), value))
        .collect())
}

/// The fields of the struct a JSON object is decoded into, for [`decode_object`].
pub trait Layout {
    /// How many fields the struct has.
    fn len(&self) -> usize;
    /// Whether it has none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The Go type of field `index`.
    fn ty(&self, index: usize) -> GoType;
    /// The field `key` names for Go (see [`go_key_matches`]), if any.
    fn find(&self, key: &str) -> Option<usize>;
    /// Whether the value of a key that names no field should be handed back
    /// ([`Decoded::unknown`]) rather than skipped, as Go skips it.
    fn keep_unknown(&self, _key: &str) -> bool {
        false
    }
}

impl Layout for &[GoField] {
    fn len(&self) -> usize {
        <[GoField]>::len(self)
    }
    fn ty(&self, index: usize) -> GoType {
        self[index].ty
    }
    fn find(&self, key: &str) -> Option<usize> {
        find_field(self, key)
    }
}

/// A JSON object decoded into a struct by [`decode_object`].
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Each field's canonical value, by index: `null` when Go leaves it zero or nil.
    pub values: Vec<Value>,
    /// The keys that name no field and that the layout asked for, with their values as
    /// written (Go never reads them, so they are not converted), in the order they came.
    pub unknown: Vec<(String, Box<RawValue>)>,
}

/// Why [`decode_object`] failed.
#[derive(Debug)]
pub enum ObjectError {
    /// Not JSON text (Go: a syntax error).
    NotJson(serde_json::Error),
    /// JSON, but not an object.
    NotObject,
    /// A value Go cannot decode into its field: the first one in the text.
    Type(DecodeError),
}

/// Decodes the JSON text `text`, which must be an object, into the struct `layout`
/// describes, as `json.Unmarshal` does: keys in the order written, each applied to the
/// field it names (so the last of two keys naming one field wins, and an object or a list
/// decoded twice into one field is merged as Go merges it), and the whole decode failing
/// when any value, at any depth and in any repetition, has a type Go refuses.
pub fn decode_object(text: &[u8], layout: &impl Layout) -> Result<Decoded, ObjectError> {
    let text = as_go_reads(text).map_err(ObjectError::NotJson)?;
    let mut slots = vec![Slot::Zero; layout.len()];
    let mut ctx = Ctx::default();
    let mut reader = serde_json::Deserializer::from_slice(&text);
    let is_object = reader
        .deserialize_any(RootVisitor {
            layout,
            slots: &mut slots,
            ctx: &mut ctx,
        })
        .and_then(|is_object| reader.end().map(|()| is_object))
        .map_err(ObjectError::NotJson)?;
    if !is_object {
        return Err(ObjectError::NotObject);
    }
    if let Some(error) = ctx.error {
        return Err(ObjectError::Type(error));
    }
    Ok(Decoded {
        values: slots
            .into_iter()
            .enumerate()
            .map(|(index, slot)| slot.canonical(layout.ty(index)))
            .collect(),
        unknown: ctx.unknown,
    })
}

/// How deep Go's `encoding/json` lets values nest (`maxNestingDepth` in its scanner): text
/// nested deeper is a syntax error.
pub const MAX_DEPTH: usize = 10_000;

/// `text` as Go's decoder reads it, for serde_json: every escaped UTF-16 surrogate that is
/// not the first half of a pair followed by its second half becomes `\ufffd`, the
/// replacement character Go stores for it (a following escape is then read on its own, as Go
/// reads it); and text nested deeper than [`MAX_DEPTH`] is refused, as Go refuses it. The text
/// is copied only when an escape changes. A backslash outside a string is a syntax error
/// either way, so only escapes are looked at, and brackets are counted outside strings.
fn as_go_reads(text: &[u8]) -> Result<Cow<'_, [u8]>, serde_json::Error> {
    let hex4 = |at: usize| -> Option<u16> {
        let digits = std::str::from_utf8(text.get(at..at + 4)?).ok()?;
        u16::from_str_radix(digits, 16).ok()
    };
    let escape_at = |at: usize| text.get(at) == Some(&b'\\') && text.get(at + 1) == Some(&b'u');
    let mut copy: Option<Vec<u8>> = None;
    let (mut index, mut depth, mut in_string) = (0, 0usize, false);
    while index < text.len() {
        match (in_string, text[index]) {
            (_, b'"') => in_string = !in_string,
            (false, b'[' | b'{') => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(serde::de::Error::custom(format_args!(
                        "nested deeper than {MAX_DEPTH} at byte {index}"
                    )));
                }
            }
            (false, b']' | b'}') => depth = depth.saturating_sub(1),
            (true, b'\\') => {
                let unit = if escape_at(index) {
                    hex4(index + 2)
                } else {
                    None
                };
                let Some(unit) = unit else {
                    // `\"`, `\\`, `\n`, ...: two bytes (a bad escape fails in the parser).
                    index += 2;
                    continue;
                };
                if (0xD800..0xE000).contains(&unit) {
                    let pairs = (0xD800..0xDC00).contains(&unit)
                        && escape_at(index + 6)
                        && hex4(index + 8).is_some_and(|low| (0xDC00..0xE000).contains(&low));
                    if pairs {
                        index += 12;
                        continue;
                    }
                    copy.get_or_insert_with(|| text.to_vec())[index + 2..index + 6]
                        .copy_from_slice(b"fffd");
                }
                index += 6;
                continue;
            }
            _ => {}
        }
        index += 1;
    }
    Ok(copy.map_or(Cow::Borrowed(text), Cow::Owned))
}

/// Whether `json.Unmarshal(text, &struct{}{})` succeeds, as OpenIM requires of a modified
/// message's content: JSON text Go accepts (any number, lone surrogate escapes, nesting up to
/// [`MAX_DEPTH`]) whose value is an object or `null`.
pub fn unmarshals_into_empty_struct(text: &[u8]) -> bool {
    let Ok(text) = as_go_reads(text) else {
        return false;
    };
    let first = text
        .iter()
        .find(|byte| !matches!(byte, b' ' | b'\t' | b'\n' | b'\r'));
    if !matches!(first, Some(b'{' | b'n')) {
        return false;
    }
    let mut reader = serde_json::Deserializer::from_slice(&text);
    serde::de::IgnoredAny::deserialize(&mut reader).is_ok() && reader.end().is_ok()
}

/// The index of the field `key` names for Go: the exact tag, else a tag equal ignoring case
/// as Go folds it ([`go_key_matches`]).
pub fn find_field(fields: &[GoField], key: &str) -> Option<usize> {
    position_by_tag(fields, key, |field| field.name)
}

/// The index of the item whose tag (`tag_of`) `key` names, matched as Go's `encoding/json`
/// matches a key to a struct field: the exact tag first, else one [`go_key_matches`].
pub fn position_by_tag<T>(items: &[T], key: &str, tag_of: impl Fn(&T) -> &str) -> Option<usize> {
    items
        .iter()
        .position(|item| tag_of(item) == key)
        .or_else(|| {
            items
                .iter()
                .position(|item| go_key_matches(tag_of(item), key))
        })
}

/// Whether Go's `encoding/json` applies the key `key` to a field tagged `tag` (an ASCII
/// tag, as all of OpenIM's are): equal ignoring case, where Go's case folding also equates
/// the Kelvin sign `K` (U+212A) with `k` and the long s `ſ` (U+017F) with `s`.
pub fn go_key_matches(tag: &str, key: &str) -> bool {
    if key.is_ascii() {
        return key.eq_ignore_ascii_case(tag);
    }
    let mut letters = key.chars();
    for expected in tag.chars() {
        let matched = match letters.next() {
            Some('\u{212A}') => expected.eq_ignore_ascii_case(&'k'),
            Some('\u{017F}') => expected.eq_ignore_ascii_case(&'s'),
            Some(letter) => letter.eq_ignore_ascii_case(&expected),
            None => false,
        };
        if !matched {
            return false;
        }
    }
    letters.next().is_none()
}

/// What `json.Unmarshal` has stored in one Go value so far. Decoding into a value that
/// already holds something is how Go applies a repeated key: a scalar is replaced, a struct
/// or a map gets the new keys, and a slice is decoded element by element into the elements
/// it already has (including ones a shorter list cut off), then cut to the new length.
#[derive(Debug, Clone, Default)]
enum Slot {
    /// The zero value, or a nil pointer, slice or map.
    #[default]
    Zero,
    Str(String),
    Int(i64),
    Bool(bool),
    /// A `[]byte` set from a base64 string.
    Base64(String),
    /// A slice: its elements up to `len`, and beyond it the ones it still holds in its
    /// capacity.
    Seq {
        items: Vec<Self>,
        len: usize,
    },
    /// A `map[string]bool`.
    Map(Map<String, Value>),
    /// A struct, by field index.
    Struct(Vec<Self>),
}

impl Slot {
    fn canonical(self, ty: GoType) -> Value {
        match (self, ty) {
            (Self::Zero, _) => Value::Null,
            (slot, GoType::Ptr(inner)) => slot.canonical(*inner),
            (Self::Str(text) | Self::Base64(text), _) => Value::String(text),
            (Self::Int(number), _) => Value::from(number),
            (Self::Bool(flag), _) => Value::Bool(flag),
            (Self::Map(map), _) => Value::Object(map),
            (Self::Seq { mut items, len }, _) => {
                let element = match ty {
                    GoType::Slice(element) => *element,
                    // `[]byte` from a list: bytes.
                    _ => GoType::Int32,
                };
                items.truncate(len);
                Value::Array(
                    items
                        .into_iter()
                        .map(|item| match item {
                            Self::Zero if !element.keeps_null() => element.zero(),
                            item => item.canonical(element),
                        })
                        .collect(),
                )
            }
            (Self::Struct(slots), GoType::Struct(fields)) => Value::Object(
                fields
                    .iter()
                    .zip(slots)
                    .filter(|(_, slot)| !matches!(slot, Self::Zero))
                    .map(|(field, slot)| (field.name.to_owned(), slot.canonical(field.ty)))
                    .collect(),
            ),
            (Self::Struct(_), _) => Value::Null,
        }
    }

    /// The bytes of a base64 `[]byte`, as elements a list decoded into it will find.
    fn into_items(self) -> Vec<Self> {
        match self {
            Self::Seq { items, .. } => items,
            Self::Base64(text) => base64_bytes(&text)
                .into_iter()
                .map(|byte| Self::Int(i64::from(byte)))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// The decode's side results: the first error (Go keeps going after a type error and
/// returns the first one at the end), and the unknown keys the layout keeps.
#[derive(Default)]
struct Ctx {
    error: Option<DecodeError>,
    unknown: Vec<(String, Box<RawValue>)>,
}

impl Ctx {
    fn wrong(&mut self, ty: GoType) {
        if self.error.is_none() {
            self.error = Some(DecodeError::WrongType {
                path: String::new(),
                expected: ty.describe(),
            });
        }
    }

    /// Decodes one nested value with `decode`; an error that appeared inside it gets
    /// `segment` in front of its path.
    fn within<T>(&mut self, segment: &str, decode: impl FnOnce(&mut Self) -> T) -> T {
        let clean = self.error.is_none();
        let result = decode(self);
        if clean {
            if let Some(error) = self.error.take() {
                self.error = Some(error.under(segment));
            }
        }
        result
    }
}

/// The reply's top level: an object decoded into `layout`, anything else drained and
/// reported as not an object.
struct RootVisitor<'a, L> {
    layout: &'a L,
    slots: &'a mut [Slot],
    ctx: &'a mut Ctx,
}

impl<'de, L: Layout> Visitor<'de> for RootVisitor<'_, L> {
    type Value = bool;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match self.layout.find(&key) {
                Some(index) => {
                    let ty = self.layout.ty(index);
                    let slot = &mut self.slots[index];
                    self.ctx
                        .within(&key, |ctx| map.next_value_seed(ValueSeed { ty, slot, ctx }))?;
                }
                None if self.layout.keep_unknown(&key) => {
                    let value: Box<RawValue> = map.next_value()?;
                    self.ctx.unknown.push((key.into_owned(), value));
                }
                None => map.next_value_seed(Skip)?,
            }
        }
        Ok(true)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        drain_seq(seq).map(|()| false)
    }
    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// An object key, borrowed from the text unless it has escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(Self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a key")
    }
    fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(key))
    }
    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(key.to_owned()))
    }
    fn visit_string<E>(self, key: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(key))
    }
}

/// Any JSON value, checked for syntax and dropped, as Go skips a value it does not store:
/// numbers are not converted, and nesting is bounded by [`MAX_DEPTH`] only.
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_ignored_any(Self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        drain_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        drain_map(map)
    }
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element_seed(Skip)?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_key_seed(Skip)?.is_some() {
        map.next_value_seed(Skip)?;
    }
    Ok(())
}

/// One value decoded into `slot`, a Go value of type `ty`.
struct ValueSeed<'a> {
    ty: GoType,
    slot: &'a mut Slot,
    ctx: &'a mut Ctx,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        let (ty, pointer) = match self.ty {
            GoType::Ptr(inner) => (*inner, true),
            ty => (ty, false),
        };
        let int = match ty {
            GoType::Int32 => Some(Int::I32),
            GoType::Int64 => Some(Int::I64),
            _ => None,
        };
        match int {
            Some(int) => int_into(deserializer, int, pointer, self.slot, self.ctx),
            None => deserializer.deserialize_any(GoVisitor {
                ty,
                pointer,
                slot: self.slot,
                ctx: self.ctx,
            }),
        }
    }
}

/// The integer kinds of OpenIM's structs: `int32`, `int64`, and `uint8` (a `[]byte`
/// element).
#[derive(Clone, Copy)]
enum Int {
    I32,
    I64,
    U8,
}

/// An integer as Go reads it: the literal's own text through `strconv.ParseInt` (or
/// `ParseUint` for a byte), then a range check. So `-0` is 0, and `1.0`, `1e2` and
/// `"1"` are refused.
fn int_into<'de, D: Deserializer<'de>>(
    deserializer: D,
    int: Int,
    pointer: bool,
    slot: &mut Slot,
    ctx: &mut Ctx,
) -> Result<(), D::Error> {
    let raw = <&RawValue>::deserialize(deserializer)?;
    let text = raw.get();
    if text == "null" {
        // A nil pointer; a plain integer keeps what it holds.
        if pointer {
            *slot = Slot::Zero;
        }
        return Ok(());
    }
    let number = match int {
        Int::I32 => text
            .parse::<i64>()
            .ok()
            .filter(|n| i32::try_from(*n).is_ok()),
        Int::I64 => text.parse::<i64>().ok(),
        Int::U8 => text.parse::<u8>().ok().map(i64::from),
    };
    match number {
        Some(number) => *slot = Slot::Int(number),
        None => ctx.wrong(match int {
            Int::I32 => GoType::Int32,
            Int::I64 => GoType::Int64,
            Int::U8 => GoType::Bytes,
        }),
    }
    Ok(())
}

/// One non-integer value of type `ty` (behind a pointer when `pointer`) into `slot`.
struct GoVisitor<'a> {
    ty: GoType,
    pointer: bool,
    slot: &'a mut Slot,
    ctx: &'a mut Ctx,
}

impl GoVisitor<'_> {
    fn wrong<E>(self) -> Result<(), E> {
        self.ctx.wrong(self.ty);
        Ok(())
    }
}

impl<'de> Visitor<'de> for GoVisitor<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.ty.describe())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        // `null` sets a pointer, slice or map to nil, and leaves anything else as it was.
        if self.pointer || matches!(self.ty, GoType::Slice(_) | GoType::BoolMap | GoType::Bytes) {
            *self.slot = Slot::Zero;
        }
        Ok(())
    }

    fn visit_bool<E>(self, flag: bool) -> Result<(), E> {
        match self.ty {
            GoType::Bool => {
                *self.slot = Slot::Bool(flag);
                Ok(())
            }
            _ => self.wrong(),
        }
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        self.wrong()
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        self.wrong()
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.wrong()
    }

    fn visit_str<E>(self, text: &str) -> Result<(), E> {
        match self.ty {
            GoType::Str => *self.slot = Slot::Str(text.to_owned()),
            GoType::Bytes if is_std_base64(text) => *self.slot = Slot::Base64(text.to_owned()),
            _ => return self.wrong(),
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let element = match self.ty {
            GoType::Slice(element) => Some(*element),
            GoType::Bytes => None,
            _ => {
                self.ctx.wrong(self.ty);
                return drain_seq(seq);
            }
        };
        let mut items = std::mem::take(self.slot).into_items();
        let mut len = 0;
        loop {
            let fresh = len == items.len();
            if fresh {
                items.push(Slot::Zero);
            }
            let slot = &mut items[len];
            let segment = format!("[{len}]");
            let more = self.ctx.within(&segment, |ctx| match element {
                Some(ty) => seq.next_element_seed(ValueSeed { ty, slot, ctx }),
                None => seq.next_element_seed(ByteSeed { slot, ctx }),
            })?;
            if more.is_none() {
                if fresh {
                    items.pop();
                }
                break;
            }
            len += 1;
        }
        if len == 0 {
            // Go makes a new empty slice: what the old one held is gone.
            items.clear();
        }
        *self.slot = Slot::Seq { items, len };
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        match self.ty {
            GoType::Struct(fields) => {
                let mut slots = match std::mem::take(self.slot) {
                    Slot::Struct(slots) => slots,
                    _ => vec![Slot::Zero; fields.len()],
                };
                while let Some(key) = map.next_key_seed(KeySeed)? {
                    match find_field(fields, &key) {
                        Some(index) => {
                            let ty = fields[index].ty;
                            let slot = &mut slots[index];
                            self.ctx.within(&key, |ctx| {
                                map.next_value_seed(ValueSeed { ty, slot, ctx })
                            })?;
                        }
                        None => map.next_value_seed(Skip)?,
                    }
                }
                *self.slot = Slot::Struct(slots);
            }
            GoType::BoolMap => {
                let mut entries = match std::mem::take(self.slot) {
                    Slot::Map(entries) => entries,
                    _ => Map::new(),
                };
                while let Some(key) = map.next_key_seed(KeySeed)? {
                    // Each value is decoded into a fresh `bool`: `null` leaves it false.
                    let mut flag = Slot::Zero;
                    self.ctx.within(&key, |ctx| {
                        map.next_value_seed(ValueSeed {
                            ty: GoType::Bool,
                            slot: &mut flag,
                            ctx,
                        })
                    })?;
                    entries.insert(
                        key.into_owned(),
                        Value::Bool(matches!(flag, Slot::Bool(true))),
                    );
                }
                *self.slot = Slot::Map(entries);
            }
            _ => {
                self.ctx.wrong(self.ty);
                return drain_map(map);
            }
        }
        Ok(())
    }
}

/// One element of a `[]byte` decoded from a list.
struct ByteSeed<'a> {
    slot: &'a mut Slot,
    ctx: &'a mut Ctx,
}

impl<'de> DeserializeSeed<'de> for ByteSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        int_into(deserializer, Int::U8, false, self.slot, self.ctx)
    }
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

/// The bytes of a string [`is_std_base64`] accepts.
fn base64_bytes(text: &str) -> Vec<u8> {
    let sextet = |symbol: u8| -> u32 {
        match symbol {
            b'A'..=b'Z' => u32::from(symbol - b'A'),
            b'a'..=b'z' => u32::from(symbol - b'a') + 26,
            b'0'..=b'9' => u32::from(symbol - b'0') + 52,
            b'+' => 62,
            _ => 63,
        }
    };
    let symbols: Vec<u8> = text
        .bytes()
        .filter(|b| !matches!(b, b'\r' | b'\n' | b'='))
        .collect();
    let mut bytes = Vec::with_capacity(symbols.len() * 3 / 4);
    for chunk in symbols.chunks(4) {
        let bits = chunk
            .iter()
            .enumerate()
            .fold(0u32, |bits, (index, symbol)| {
                bits | sextet(*symbol) << (18 - 6 * index)
            });
        let [_, first, second, third] = bits.to_be_bytes();
        bytes.extend_from_slice(&[first, second, third][..chunk.len().saturating_sub(1)]);
    }
    bytes
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
        // Two spellings of one tag are two writes to one field: the last wins.
        assert_eq!(
            decode(LIST, &json!([{"userID":"u1","UserID":"u2"}])),
            Ok(json!([{"userID":"u2"}]))
        );
    }

    const P_STR: GoType = GoType::Ptr(&GoType::Str);
    const PUSH: &[GoField] = &[field("title", GoType::Str), field("desc", GoType::Str)];
    const REPLY: &[GoField] = &[
        field("nickName", P_STR),
        field("groupName", GoType::Str),
        field("count", GoType::Int32),
        field("push", GoType::Ptr(&GoType::Struct(PUSH))),
        field("list", LIST),
        field("ids", GoType::Slice(&GoType::Str)),
        field("options", GoType::BoolMap),
        field("data", GoType::Bytes),
    ];

    /// `text` decoded into `REPLY`: the fields that hold a value, or the failing path.
    fn decode_text(text: &str) -> Result<Value, String> {
        match decode_object(text.as_bytes(), &REPLY) {
            Ok(decoded) => Ok(Value::Object(
                REPLY
                    .iter()
                    .zip(decoded.values)
                    .filter(|(_, value)| !value.is_null())
                    .map(|(field, value)| (field.name.to_owned(), value))
                    .collect(),
            )),
            Err(ObjectError::Type(error)) => Err(error.path().to_owned()),
            Err(other) => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn a_repeated_key_fails_the_decode_when_any_of_its_values_has_the_wrong_type() {
        // Go saves the first type error, goes on applying the later values, and returns it.
        for (text, path) in [
            (r#"{"nickName":5,"nickName":"x"}"#, "nickName"),
            (r#"{"nickName":"x","nickName":5}"#, "nickName"),
            (r#"{"nickName":5,"NICKNAME":"x"}"#, "nickName"),
            (r#"{"count":"1","Count":1}"#, "count"),
            (r#"{"push":{"title":1,"title":"t"}}"#, "push.title"),
            (r#"{"push":{"title":1},"push":{"title":"t"}}"#, "push.title"),
            (r#"{"list":[{"userID":5,"userID":"u"}]}"#, "list[0].userID"),
            (
                r#"{"list":[{"roleLevel":"1"}],"list":[{"roleLevel":1}]}"#,
                "list[0].roleLevel",
            ),
            (r#"{"ids":[1],"ids":["a"]}"#, "ids[0]"),
            (r#"{"options":{"a":1,"a":true}}"#, "options.a"),
        ] {
            assert_eq!(decode_text(text), Err(path.to_owned()), "{text}");
        }
    }

    #[test]
    fn a_repeated_key_is_applied_again_in_the_order_written() {
        for (text, expected) in [
            // Scalars: the last value wins, whatever the spelling.
            (
                r#"{"nickName":"a","nickName":"b"}"#,
                json!({"nickName":"b"}),
            ),
            (
                r#"{"NickName":"a","nickName":"b","NickName":"c"}"#,
                json!({"nickName":"c"}),
            ),
            (
                r#"{"nickName":"a","NickName":"b","nickName":"c","NickName":"d"}"#,
                json!({"nickName":"d"}),
            ),
            // `null` sets a pointer to nil and leaves a plain value alone.
            (r#"{"nickName":"a","nickName":null}"#, json!({})),
            (
                r#"{"groupName":"a","groupName":null,"count":7,"count":null}"#,
                json!({"groupName":"a","count":7}),
            ),
            // An object is decoded into the struct the pointer already holds.
            (
                r#"{"push":{"title":"t"},"push":{"desc":"d"}}"#,
                json!({"push":{"title":"t","desc":"d"}}),
            ),
            (
                r#"{"push":{"title":"t"},"push":null,"push":{"desc":"d"}}"#,
                json!({"push":{"desc":"d"}}),
            ),
            // A list is decoded into the elements already there, then cut to its length;
            // elements a shorter list cut off are still there for a longer one.
            (
                r#"{"list":[{"userID":"a","roleLevel":1},{"userID":"b"}],"list":[{"roleLevel":2}]}"#,
                json!({"list":[{"userID":"a","roleLevel":2}]}),
            ),
            (
                r#"{"ids":["a","b","c"],"ids":["x"],"ids":["y",null,null]}"#,
                json!({"ids":["y","b","c"]}),
            ),
            // An empty list is a new slice.
            (
                r#"{"ids":["a","b"],"ids":[],"ids":["y",null]}"#,
                json!({"ids":["y",""]}),
            ),
            (
                r#"{"data":"aGk=","data":[1,null]}"#,
                json!({"data":[1,105]}),
            ),
            // A map gets the new keys.
            (
                r#"{"options":{"a":true},"options":{"b":true,"a":null}}"#,
                json!({"options":{"a":false,"b":true}}),
            ),
        ] {
            assert_eq!(decode_text(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn integers_are_read_from_their_literal_as_strconv_parses_it() {
        assert_eq!(decode_text(r#"{"count":-0}"#), Ok(json!({"count":0})));
        assert_eq!(decode_text(r#"{"count":-7}"#), Ok(json!({"count":-7})));
        for literal in [
            "-0.0",
            "0e0",
            "1.0",
            "2147483648",
            "-2147483649",
            "true",
            "\"1\"",
        ] {
            let text = format!(r#"{{"count":{literal}}}"#);
            assert_eq!(decode_text(&text), Err("count".to_owned()), "{text}");
        }
        // A byte of a `[]byte` list is a `uint8`: no sign.
        assert_eq!(decode_text(r#"{"data":[-0]}"#), Err("data[0]".to_owned()));
    }

    #[test]
    fn keys_fold_as_go_folds_them() {
        assert!(go_key_matches("nickName", "NICKNAME"));
        // The Kelvin sign folds to k, the long s to s.
        assert!(go_key_matches("nickName", "nic\u{212A}Name"));
        assert!(go_key_matches("ids", "id\u{17F}"));
        assert!(!go_key_matches("ids", "idß"));
        assert!(!go_key_matches("nickName", "nickNam"));
        assert_eq!(
            decode_text("{\"nic\u{212A}name\":\"k\"}"),
            Ok(json!({"nickName":"k"}))
        );
    }

    #[test]
    fn only_a_well_formed_object_decodes() {
        let kind = |text: &str| match decode_object(text.as_bytes(), &REPLY) {
            Ok(_) => "ok",
            Err(ObjectError::NotJson(_)) => "not json",
            Err(ObjectError::NotObject) => "not an object",
            Err(ObjectError::Type(_)) => "wrong type",
        };
        assert_eq!(kind("{}"), "ok");
        assert_eq!(kind(" {\"other\":[{\"x\":[1e3]}]} "), "ok");
        assert_eq!(kind("null"), "not an object");
        assert_eq!(kind("[{}]"), "not an object");
        assert_eq!(kind("\"x\""), "not an object");
        assert_eq!(kind(""), "not json");
        assert_eq!(kind("{} {}"), "not json");
        // Go checks the whole text before it decodes: a syntax error anywhere wins.
        assert_eq!(kind(r#"{"count":"x","other":[}"#), "not json");
        assert_eq!(kind(r#"{"count":"x","other":"\xff"}"#), "not json");
        // Go nests up to 10000 deep, and skips what it does not store without converting it.
        let nested = |depth: usize| {
            format!(
                "{{\"other\":{}{}}}",
                "[".repeat(depth - 1),
                "]".repeat(depth - 1)
            )
        };
        assert_eq!(kind(&nested(200)), "ok");
        assert_eq!(kind(&nested(MAX_DEPTH)), "ok");
        assert_eq!(kind(&nested(MAX_DEPTH + 1)), "not json");
        assert_eq!(kind(r#"{"other":1e400,"x":[-1e999]}"#), "ok");
        // A known field still has its type checked: a huge number is no string.
        assert_eq!(kind(r#"{"nickName":1e400}"#), "not json");
        assert_eq!(kind(r#"{"count":1e400}"#), "wrong type");
    }

    #[test]
    fn lone_surrogate_escapes_are_read_as_go_reads_them() {
        for (text, expected) in [
            (r#"{"nickName":"\ud800"}"#, "\u{fffd}"),
            (r#"{"nickName":"\udc00x"}"#, "\u{fffd}x"),
            (r#"{"nickName":"a\uD800\u0041"}"#, "a\u{fffd}A"),
            (r#"{"nickName":"\ud800\ud800\udc00"}"#, "\u{fffd}\u{10000}"),
            (r#"{"nickName":"\udc00\ud800"}"#, "\u{fffd}\u{fffd}"),
            (r#"{"nickName":"\ud83d\ude00"}"#, "\u{1f600}"),
            // An escaped backslash before `ud800` is text, not an escape.
            (r#"{"nickName":"\\ud800"}"#, "\\ud800"),
        ] {
            assert_eq!(
                decode_text(text),
                Ok(json!({ "nickName": expected })),
                "{text}"
            );
        }
        // In a key too: U+FFFD names no field.
        assert_eq!(decode_text(r#"{"nickNam\ud800":"x"}"#), Ok(json!({})));
    }

    #[test]
    fn content_is_checked_as_go_unmarshals_it_into_an_empty_struct() {
        let deep = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        for good in [
            "{}".to_owned(),
            " null ".to_owned(),
            r#"{"a":1e400}"#.to_owned(),
            r#"{"a":"\ud800"}"#.to_owned(),
            r#"{"a":"\udc00x"}"#.to_owned(),
            format!("{{\"a\":{}}}", deep(200)),
            format!("{{\"a\":{}}}", deep(MAX_DEPTH - 1)),
        ] {
            assert!(unmarshals_into_empty_struct(good.as_bytes()), "{good}");
        }
        for bad in [
            "".to_owned(),
            "hello".to_owned(),
            "[1]".to_owned(),
            "\"text\"".to_owned(),
            "5".to_owned(),
            "nul".to_owned(),
            "{\"a\":".to_owned(),
            "{} x".to_owned(),
            "{\"a\":\"\u{1}\"}".to_owned(),
            format!("{{\"a\":{}}}", deep(MAX_DEPTH)),
        ] {
            assert!(!unmarshals_into_empty_struct(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn bool_maps_hold_booleans_only() {
        assert!(decode(GoType::BoolMap, &json!({"a":true,"b":null})).is_ok());
        assert!(decode(GoType::BoolMap, &json!({"a":1})).is_err());
        assert!(decode(GoType::BoolMap, &json!([true])).is_err());
    }
}
