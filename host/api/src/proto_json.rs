//! Serde helpers implementing the canonical proto3 JSON mapping for scalar fields.
//!
//! Output follows the canonical form (what Go's `protojson` and Rust's `pbjson` emit): 64-bit integers as
//! decimal strings, 32-bit integers and floats as numbers, non-finite floats as `"NaN"`/`"Infinity"`.
//! Input is as lenient as the mapping allows: integers as numbers or strings (including integral
//! exponent forms such as `"1e3"`), floats as numbers or strings, and `null` for any field meaning
//! "the default value".

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::Serializer;

/// Deserializes `T`, reading `null` as `T::default()` (proto3: `null` means "field not set").
pub(crate) fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `skip_serializing_if` for numeric defaults.
pub(crate) fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// `skip_serializing_if` for `bool` (proto3 omits `false`).
pub(crate) fn is_false(v: &bool) -> bool {
    !*v
}

/// An integer type the mapping covers (`int32`, `sint32`, `uint32`, `int64`, `uint64`).
pub(crate) trait ProtoInt: Sized + Copy {
    const NAME: &'static str;
    fn from_i128(v: i128) -> Option<Self>;
}

macro_rules! proto_int {
    ($($t:ty => $name:literal),*) => {$(
        impl ProtoInt for $t {
            const NAME: &'static str = $name;
            fn from_i128(v: i128) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
        }
    )*};
}
proto_int!(i32 => "a 32-bit signed integer", u32 => "a 32-bit unsigned integer", u64 => "a 64-bit unsigned integer");

/// Parses the textual forms the mapping accepts for an integer: a decimal integer, or a number in
/// decimal/exponent notation whose value is integral.
fn parse_int_str<T: ProtoInt>(s: &str) -> Option<T> {
    if let Ok(v) = s.parse::<i128>() {
        return T::from_i128(v);
    }
    // Only the JSON number grammar, not Rust's extras such as "inf" or "nan".
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
    {
        return None;
    }
    float_to_int(s.parse::<f64>().ok()?)
}

fn float_to_int<T: ProtoInt>(f: f64) -> Option<T> {
    // 2^64 is exactly representable, and anything beyond is out of range for every supported type.
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 18_446_744_073_709_551_616.0 {
        T::from_i128(f as i128)
    } else {
        None
    }
}

struct IntVisitor<T>(PhantomData<T>);

impl<'de, T: ProtoInt> Visitor<'de> for IntVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (a JSON number or a decimal string)", T::NAME)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        T::from_i128(v.into())
            .map(Some)
            .ok_or_else(|| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        T::from_i128(v.into())
            .map(Some)
            .ok_or_else(|| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        float_to_int(v)
            .map(Some)
            .ok_or_else(|| E::invalid_value(de::Unexpected::Float(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        parse_int_str(v)
            .map(Some)
            .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

fn deserialize_int<'de, D: Deserializer<'de>, T: ProtoInt + Default>(d: D) -> Result<T, D::Error> {
    Ok(d.deserialize_any(IntVisitor::<T>(PhantomData))?
        .unwrap_or_default())
}

/// 32-bit integers (`int32`, `sint32`, `uint32`): JSON numbers out, numbers or strings in.
pub(crate) mod int32 {
    use super::*;

    pub(crate) fn serialize<S: Serializer, T: serde::Serialize>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, T: ProtoInt + Default>(d: D) -> Result<T, D::Error> {
        deserialize_int(d)
    }
}

/// 64-bit integers (`uint64`): decimal strings out, numbers or strings in.
pub(crate) mod int64 {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        deserialize_int(d)
    }
}

/// `float`: a JSON number out (`"NaN"`, `"Infinity"`, `"-Infinity"` for non-finite values), numbers or
/// strings in.
pub(crate) mod float32 {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
        if v.is_nan() {
            s.serialize_str("NaN")
        } else if v.is_infinite() {
            s.serialize_str(if *v > 0.0 { "Infinity" } else { "-Infinity" })
        } else {
            s.serialize_f32(*v)
        }
    }

    struct FloatVisitor;

    impl<'de> Visitor<'de> for FloatVisitor {
        type Value = f32;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a float (a JSON number, a numeric string, \"NaN\", \"Infinity\" or \"-Infinity\")")
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f32, E> {
            Ok(v as f32)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f32, E> {
            Ok(v as f32)
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f32, E> {
            let f = v as f32;
            if f.is_infinite() {
                return Err(E::invalid_value(
                    de::Unexpected::Float(v),
                    &"a value in the range of a float",
                ));
            }
            Ok(f)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<f32, E> {
            match v {
                "NaN" => Ok(f32::NAN),
                "Infinity" => Ok(f32::INFINITY),
                "-Infinity" => Ok(f32::NEG_INFINITY),
                _ if !v.is_empty()
                    && v.bytes()
                        .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')) =>
                {
                    let f = v
                        .parse::<f64>()
                        .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))?;
                    self.visit_f64(f)
                }
                _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
            }
        }

        fn visit_none<E: de::Error>(self) -> Result<f32, E> {
            Ok(0.0)
        }

        fn visit_unit<E: de::Error>(self) -> Result<f32, E> {
            Ok(0.0)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<f32, D::Error> {
            d.deserialize_any(self)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        d.deserialize_any(FloatVisitor)
    }
}

/// Declares a proto3 enum: serialized as its name, deserialized from its name or its number, `null`
/// reading as the zero value.
macro_rules! proto_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $num:literal => $wire:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        #[repr(i32)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $num, )*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The proto name of this value, e.g. as it appears on the wire.
            pub const fn as_str_name(self) -> &'static str {
                match self { $( $name::$variant => $wire, )* }
            }

            /// The value with this proto name.
            pub fn from_str_name(name: &str) -> Option<Self> {
                match name { $( $wire => Some($name::$variant), )* _ => None }
            }

            /// Whether this is the zero value (omitted on output).
            pub fn is_default(&self) -> bool {
                *self == Self::default()
            }
        }

        impl TryFrom<i32> for $name {
            type Error = i32;

            fn try_from(v: i32) -> Result<Self, i32> {
                match v { $( $num => Ok($name::$variant), )* other => Err(other) }
            }
        }

        impl From<$name> for i32 {
            fn from(v: $name) -> i32 {
                v as i32
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str_name())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str_name())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct EnumVisitor;

                impl<'de> serde::de::Visitor<'de> for EnumVisitor {
                    type Value = $name;

                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(f, "a {} name ({}) or number", stringify!($name), [$($wire),*].join(", "))
                    }

                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::from_str_name(v).ok_or_else(|| E::unknown_variant(v, &[$($wire),*]))
                    }

                    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<$name, E> {
                        i32::try_from(v)
                            .ok()
                            .and_then(|n| $name::try_from(n).ok())
                            .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
                    }

                    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<$name, E> {
                        i32::try_from(v)
                            .ok()
                            .and_then(|n| $name::try_from(n).ok())
                            .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
                    }

                    fn visit_unit<E: serde::de::Error>(self) -> Result<$name, E> {
                        Ok($name::default())
                    }

                    fn visit_none<E: serde::de::Error>(self) -> Result<$name, E> {
                        Ok($name::default())
                    }

                    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<$name, D::Error> {
                        d.deserialize_any(self)
                    }
                }

                d.deserialize_any(EnumVisitor)
            }
        }
    };
}
pub(crate) use proto_enum;

#[cfg(test)]
mod tests {
    use super::*;

    fn int<T: ProtoInt + Default>(json: &str) -> Result<T, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_str(json);
        deserialize_int(&mut de)
    }

    #[test]
    fn integers_accept_numbers_strings_and_integral_exponents() {
        assert_eq!(int::<u64>("42").unwrap(), 42);
        assert_eq!(int::<u64>("\"42\"").unwrap(), 42);
        assert_eq!(int::<u64>("\"18446744073709551615\"").unwrap(), u64::MAX);
        assert_eq!(int::<u64>("1e3").unwrap(), 1000);
        assert_eq!(int::<u64>("\"1.5e1\"").unwrap(), 15);
        assert_eq!(int::<i32>("-7").unwrap(), -7);
        assert_eq!(int::<i32>("\"-7\"").unwrap(), -7);
        assert_eq!(int::<i32>("null").unwrap(), 0);
        assert_eq!(int::<u32>("3.0").unwrap(), 3);
    }

    #[test]
    fn integers_reject_fractions_overflow_and_garbage() {
        for bad in [
            "1.5",
            "\"1.5\"",
            "-1",
            "\"18446744073709551616\"",
            "\"abc\"",
            "\"\"",
            "\" 1\"",
            "true",
            "\"inf\"",
        ] {
            assert!(int::<u64>(bad).is_err(), "u64 accepted {bad}");
        }
        assert!(int::<i32>("2147483648").is_err());
        assert!(int::<u32>("-1").is_err());
    }

    #[test]
    fn floats_accept_numbers_strings_and_special_names() {
        let f = |json: &str| {
            let mut de = serde_json::Deserializer::from_str(json);
            float32::deserialize(&mut de)
        };
        assert_eq!(f("12.5").unwrap(), 12.5);
        assert_eq!(f("\"12.5\"").unwrap(), 12.5);
        assert_eq!(f("3").unwrap(), 3.0);
        assert!(f("\"NaN\"").unwrap().is_nan());
        assert_eq!(f("\"-Infinity\"").unwrap(), f32::NEG_INFINITY);
        assert_eq!(f("null").unwrap(), 0.0);
        assert!(f("\"nan\"").is_err());
        assert!(f("1e300").is_err(), "out of float range");
    }

    #[test]
    fn non_finite_floats_serialize_as_names() {
        let s = |v: f32| {
            let mut out = Vec::new();
            float32::serialize(&v, &mut serde_json::Serializer::new(&mut out)).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(s(f32::NAN), "\"NaN\"");
        assert_eq!(s(f32::INFINITY), "\"Infinity\"");
        assert_eq!(s(f32::NEG_INFINITY), "\"-Infinity\"");
        assert_eq!(s(37.5), "37.5");
        // Shortest text that reads back as the same float32, as protojson writes float fields.
        assert_eq!(s(0.1), "0.1");
        assert_eq!(s(3.2), "3.2");
    }
}
