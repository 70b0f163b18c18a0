//! Label sets written once: [`label_set!`] declares a series' struct and,
//! from the same field list, the label names in order (`LABELS`) and their
//! values (`label_values`). A label cannot be named in one list and
//! forgotten in the other.

use std::borrow::Cow;

/// A field that can be a label value.
pub trait LabelValue {
    fn label(&self) -> Cow<'_, str>;
}

impl LabelValue for String {
    fn label(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl LabelValue for &'static str {
    fn label(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl LabelValue for bool {
    fn label(&self) -> Cow<'_, str> {
        Cow::Borrowed(if *self { "true" } else { "false" })
    }
}

macro_rules! numeric_label {
    ($($ty:ty),*) => {$(
        impl LabelValue for $ty {
            fn label(&self) -> Cow<'_, str> {
                Cow::Owned(self.to_string())
            }
        }
    )*};
}
numeric_label!(u16, u32, u64);

/// Declares a series struct whose `labels { ... }` fields are its labels, in
/// exposition order and named as the fields are, and whose `values { ... }`
/// fields are not labels (the sample value).
#[macro_export]
macro_rules! label_set {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            labels {
                $( $(#[$label_meta:meta])* $label:ident : $label_ty:ty ),* $(,)?
            }
            values {
                $( $(#[$value_meta:meta])* $value:ident : $value_ty:ty ),* $(,)?
            }
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[$label_meta])* pub $label: $label_ty, )*
            $( $(#[$value_meta])* pub $value: $value_ty, )*
        }

        impl $name {
            /// Label names, in exposition order.
            pub const LABELS: &'static [&'static str] = &[$(stringify!($label)),*];

            /// Label values, in the order of [`Self::LABELS`].
            pub fn label_values(&self) -> Vec<std::borrow::Cow<'_, str>> {
                use $crate::model::labels::LabelValue as _;
                vec![$(self.$label.label()),*]
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::label_set! {
        #[derive(Debug)]
        pub struct Example {
            labels {
                port: u16,
                name: String,
                flag: bool,
            }
            values {
                count: u64,
            }
        }
    }

    #[test]
    fn names_and_values_come_from_one_list() {
        let example = Example {
            port: 276,
            name: "a\"b".into(),
            flag: true,
            count: 3,
        };
        assert_eq!(Example::LABELS, ["port", "name", "flag"]);
        assert_eq!(example.label_values(), ["276", "a\"b", "true"]);
        assert_eq!(example.count, 3);
    }
}
