//! The registry of externalizable classes the decoder understands.
//!
//! An externalizable object's body is whatever its class's `writeExternal` wrote, so a decoder that
//! does not know the class cannot find where the body ends: such an object is an error naming the
//! class. The Flex collection and proxy classes write exactly one AMF3 value (their source array or
//! proxied object), which is the one external format supported here.

use std::collections::HashSet;

/// Flex's `ArrayCollection`: its external form is its source Array.
pub const ARRAY_COLLECTION: &str = "flex.messaging.io.ArrayCollection";
/// Flex's `ArrayList`: its external form is its source Array.
pub const ARRAY_LIST: &str = "flex.messaging.io.ArrayList";
/// Flex's `ObjectProxy`: its external form is the proxied object.
pub const OBJECT_PROXY: &str = "flex.messaging.io.ObjectProxy";

/// Class aliases whose external form is one AMF3 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalRegistry {
    single_value_classes: HashSet<String>,
}

impl ExternalRegistry {
    /// A registry that knows no class at all.
    pub fn empty() -> ExternalRegistry {
        ExternalRegistry {
            single_value_classes: HashSet::new(),
        }
    }

    /// Registers a class whose `writeExternal` writes exactly one AMF3 value.
    pub fn with_single_value_class(mut self, class_name: &str) -> ExternalRegistry {
        self.single_value_classes.insert(class_name.to_owned());
        self
    }

    /// Whether the class's external form is known.
    pub fn knows(&self, class_name: &str) -> bool {
        self.single_value_classes.contains(class_name)
    }
}

impl Default for ExternalRegistry {
    /// The Flex classes: ArrayCollection, ArrayList and ObjectProxy.
    fn default() -> Self {
        ExternalRegistry::empty()
            .with_single_value_class(ARRAY_COLLECTION)
            .with_single_value_class(ARRAY_LIST)
            .with_single_value_class(OBJECT_PROXY)
    }
}
