//! Label sets written once: [`label_set!`] declares a series' struct and,
//! from the same field list, the label names in order (`LABELS`) and their
//! values (`label_values`). A label cannot be named in one list and
//! forgotten in the other. It also implements [`SortedLabels`]: the labels
//! in name order (the order of the text exposition), the order computed at
//! compile time and the values lent without allocating, so the exposition
//! writer (`crate::metrics::text`) copies them straight into its buffer.

use std::borrow::Cow;

/// A field that can be a label value.
pub trait LabelValue {
    fn label(&self) -> Cow<'_, str>;
    /// The same value lent as text, or as a number the writer formats: no
    /// allocation.
    fn label_ref(&self) -> LabelRef<'_>;
}

/// A label value as the exposition writer takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelRef<'a> {
    Text(&'a str),
    Number(u64),
}

/// A label set's labels in name order, as the text exposition writes them.
pub trait SortedLabels {
    /// Calls `each` with every (name, value), in label-name order.
    fn for_each_sorted<'a>(&'a self, each: impl FnMut(&'static str, LabelRef<'a>));
}

/// Positions of `names` in name order, for [`SortedLabels`] (evaluated at
/// compile time by [`label_set!`]).
pub const fn sorted_order<const N: usize>(names: [&str; N]) -> [usize; N] {
    let mut order = [0; N];
    let mut i = 0;
    while i < N {
        order[i] = i;
        i += 1;
    }
    // Insertion sort: label sets are short, and this runs in the compiler.
    let mut i = 1;
    while i < N {
        let mut j = i;
        while j > 0 && str_less(names[order[j]], names[order[j - 1]]) {
            let swap = order[j];
            order[j] = order[j - 1];
            order[j - 1] = swap;
            j -= 1;
        }
        i += 1;
    }
    order
}

/// `a < b` by bytes, in a const context.
const fn str_less(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut i = 0;
    while i < a.len() && i < b.len() {
        if a[i] != b[i] {
            return a[i] < b[i];
        }
        i += 1;
    }
    a.len() < b.len()
}

impl LabelValue for String {
    fn label(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
    fn label_ref(&self) -> LabelRef<'_> {
        LabelRef::Text(self)
    }
}

impl LabelValue for &'static str {
    fn label(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
    fn label_ref(&self) -> LabelRef<'_> {
        LabelRef::Text(self)
    }
}

impl LabelValue for bool {
    fn label(&self) -> Cow<'_, str> {
        Cow::Borrowed(if *self { "true" } else { "false" })
    }
    fn label_ref(&self) -> LabelRef<'_> {
        LabelRef::Text(if *self { "true" } else { "false" })
    }
}

macro_rules! numeric_label {
    ($($ty:ty),*) => {$(
        impl LabelValue for $ty {
            fn label(&self) -> Cow<'_, str> {
                Cow::Owned(self.to_string())
            }
            fn label_ref(&self) -> LabelRef<'_> {
                LabelRef::Number(u64::from(*self))
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

        impl $crate::model::labels::SortedLabels for $name {
            fn for_each_sorted<'a>(
                &'a self,
                mut each: impl FnMut(&'static str, $crate::model::labels::LabelRef<'a>),
            ) {
                use $crate::model::labels::LabelValue as _;
                const ORDER: [usize; $name::LABELS.len()] =
                    $crate::model::labels::sorted_order([$(stringify!($label)),*]);
                let values = [$(self.$label.label_ref()),*];
                for index in ORDER {
                    each(Self::LABELS[index], values[index]);
                }
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

    #[test]
    fn sorted_labels_come_in_name_order_without_allocating() {
        use super::{LabelRef, SortedLabels};
        let example = Example {
            port: 276,
            name: "n".into(),
            flag: false,
            count: 0,
        };
        let mut seen = Vec::new();
        example.for_each_sorted(|name, value| seen.push((name, value)));
        assert_eq!(
            seen,
            [
                ("flag", LabelRef::Text("false")),
                ("name", LabelRef::Text("n")),
                ("port", LabelRef::Number(276)),
            ]
        );
        assert_eq!(
            super::sorted_order(["b", "a", "ab", "c", "a_"]),
            [1, 4, 2, 0, 3]
        );
    }
}
