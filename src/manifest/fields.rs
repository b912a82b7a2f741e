//! The link fields a manifest may set (`LinkField`), and the values a link or `defaults` gives
//! them (`Fields`), before they are checked together.

/// A link field as the manifest spells it, in the order the create body lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LinkField {
    Provider,
    Vendor,
    Region,
    Arn,
    ServiceEndpointId,
    DnsDomain,
    DnsSubDomain,
    AzureResourceIds,
    GcpConnectionIds,
    GcpServiceAttachmentUris,
    AuthenticationScheme,
}

impl LinkField {
    const COUNT: usize = 11;

    pub(super) const ALL: [LinkField; Self::COUNT] = [
        LinkField::Provider,
        LinkField::Vendor,
        LinkField::Region,
        LinkField::Arn,
        LinkField::ServiceEndpointId,
        LinkField::DnsDomain,
        LinkField::DnsSubDomain,
        LinkField::AzureResourceIds,
        LinkField::GcpConnectionIds,
        LinkField::GcpServiceAttachmentUris,
        LinkField::AuthenticationScheme,
    ];

    /// Every key, in `ALL`'s order: what an unknown key is compared with for a suggestion.
    pub(super) const KEYS: [&'static str; Self::COUNT] = {
        let mut keys = [""; Self::COUNT];
        let mut i = 0;
        while i < Self::COUNT {
            keys[i] = Self::ALL[i].key();
            i += 1;
        }
        keys
    };

    /// The key in the manifest (and in the create body).
    pub(super) const fn key(self) -> &'static str {
        match self {
            LinkField::Provider => "provider",
            LinkField::Vendor => "vendor",
            LinkField::Region => "region",
            LinkField::Arn => "arn",
            LinkField::ServiceEndpointId => "serviceEndpointId",
            LinkField::DnsDomain => "dnsDomain",
            LinkField::DnsSubDomain => "dnsSubDomain",
            LinkField::AzureResourceIds => "azureResourceIds",
            LinkField::GcpConnectionIds => "gcpConnectionIds",
            LinkField::GcpServiceAttachmentUris => "gcpServiceAttachmentUris",
            LinkField::AuthenticationScheme => "authenticationScheme",
        }
    }

    /// The field a key names, exactly as spelled (keys are case-sensitive).
    pub(super) fn parse(key: &str) -> Option<LinkField> {
        LinkField::ALL.into_iter().find(|f| f.key() == key)
    }

    /// Whether the field takes a list of strings rather than one string.
    pub(super) fn is_list(self) -> bool {
        matches!(
            self,
            LinkField::DnsSubDomain
                | LinkField::AzureResourceIds
                | LinkField::GcpConnectionIds
                | LinkField::GcpServiceAttachmentUris
        )
    }
}

/// One field's value, type-checked on its own.
#[derive(Clone)]
pub(super) enum FieldVal {
    Str(String),
    List(Vec<String>),
    /// Present but already reported as wrong: later rules leave it alone.
    Bad,
}

/// Where a link's value came from: the link itself or its project's `defaults`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    Link,
    Defaults,
}

/// The values set for each `LinkField` of one link (or of `defaults`), with where each came from.
#[derive(Clone, Default)]
pub(super) struct Fields([Option<(FieldVal, Origin)>; LinkField::COUNT]);

impl Fields {
    pub(super) fn get(&self, field: LinkField) -> Option<&(FieldVal, Origin)> {
        self.0[field as usize].as_ref()
    }

    /// Sets a value, or with `None` removes it (a link's `null` drops what `defaults` gave).
    pub(super) fn set(&mut self, field: LinkField, value: Option<(FieldVal, Origin)>) {
        self.0[field as usize] = value;
    }

    /// Whether any value was already reported as wrong.
    pub(super) fn any_bad(&self) -> bool {
        self.0.iter().any(|f| matches!(f, Some((FieldVal::Bad, _))))
    }
}
