//! Checking one link: what each provider and vendor requires and forbids, and building its spec.

use super::fields::{FieldVal, Fields, LinkField, Origin};
use super::problem::quote;
use super::walk::FileCtx;
use crate::model::{AuthScheme, LinkSpec, Provider, Vendor};

/// What a provider and vendor need. `GENERIC` (no vendor) is not in Atlas's table; we require
/// `region` for it on every provider, since Atlas cannot place an endpoint without one.
pub(super) fn required_fields(provider: Provider, vendor: Vendor) -> &'static [LinkField] {
    match (provider, vendor) {
        (Provider::Aws, Vendor::Msk) => &[LinkField::Arn],
        // No `dnsDomain`: Confluent Enterprise and Serverless clusters are created without it
        // (Confluent derives the domain from the new endpoint; it is set later with PATCH).
        (Provider::Aws, Vendor::Confluent) => &[
            LinkField::Region,
            LinkField::ServiceEndpointId,
            LinkField::DnsSubDomain,
        ],
        // MongoDB's docs ask only `region` of KINESIS; its `serviceEndpointId` is accepted.
        (Provider::Aws, Vendor::Kinesis) => &[LinkField::Region],
        (Provider::Aws, Vendor::S3 | Vendor::Lambda) => {
            &[LinkField::Region, LinkField::ServiceEndpointId]
        }
        (Provider::Azure, Vendor::Eventhub) => &[
            LinkField::Region,
            LinkField::DnsDomain,
            LinkField::ServiceEndpointId,
        ],
        (Provider::Azure, Vendor::Confluent) => &[
            LinkField::Region,
            LinkField::DnsDomain,
            LinkField::AzureResourceIds,
        ],
        (Provider::Azure, Vendor::AzureBlobStorage) => &[
            LinkField::Region,
            LinkField::ServiceEndpointId,
            LinkField::DnsDomain,
        ],
        (Provider::Gcp, Vendor::Confluent) => &[
            LinkField::Region,
            LinkField::DnsDomain,
            LinkField::GcpServiceAttachmentUris,
        ],
        _ => &[LinkField::Region],
    }
}

/// Fields a combination must not set, with the reason.
pub(super) fn forbidden_fields(
    provider: Provider,
    vendor: Vendor,
) -> Vec<(LinkField, &'static str)> {
    let mut out = Vec::new();
    match (provider, vendor) {
        (Provider::Aws, Vendor::Msk) => out.push((
            LinkField::Region,
            "Atlas derives the region of an MSK link from its `arn`",
        )),
        (Provider::Azure, Vendor::Confluent) => out.push((
            LinkField::ServiceEndpointId,
            "AZURE CONFLUENT links name their endpoints in `azureResourceIds`",
        )),
        _ => {}
    }
    if vendor != Vendor::Msk {
        out.push((
            LinkField::AuthenticationScheme,
            "Atlas applies `authenticationScheme` only to MSK links and ignores it on others, so this link could never match the connection Atlas returns",
        ));
    }
    if provider != Provider::Aws {
        out.push((
            LinkField::Arn,
            "an ARN names an AWS resource; only AWS links take one",
        ));
    }
    if provider != Provider::Azure {
        out.push((
            LinkField::AzureResourceIds,
            "Azure resource ids belong only on AZURE links",
        ));
    }
    if provider != Provider::Gcp {
        out.push((
            LinkField::GcpConnectionIds,
            "GCP ids belong only on GCP links",
        ));
        out.push((
            LinkField::GcpServiceAttachmentUris,
            "GCP ids belong only on GCP links",
        ));
    }
    out
}

fn origin_note(origin: Origin) -> &'static str {
    match origin {
        Origin::Defaults => {
            " (inherited from the project's `defaults`; set it to null in the link to drop it)"
        }
        Origin::Link => "",
    }
}

/// Checks the merged fields of one link and builds its spec when they are sound.
pub(super) fn check_link(
    ctx: &mut FileCtx,
    fields: &Fields,
    path: &str,
    name: Option<&str>,
) -> Option<LinkSpec> {
    let fpath = |f: LinkField| format!("{path}.{}", f.key());
    let mut ok = true;
    let get_str = |f: LinkField| match fields.get(f) {
        Some((FieldVal::Str(s), o)) => Some((s.as_str(), *o)),
        _ => None,
    };
    let is_bad = |f: LinkField| matches!(fields.get(f), Some((FieldVal::Bad, _)));
    if fields.any_bad() {
        ok = false;
    }

    let provider = match get_str(LinkField::Provider) {
        Some((s, o)) => match Provider::parse(s) {
            Some(p) => Some(p),
            None => {
                ctx.problem(
                    fpath(LinkField::Provider),
                    name,
                    format!(
                        "`{}` is not a provider: use AWS, AZURE or GCP{}",
                        quote(s),
                        origin_note(o)
                    ),
                );
                None
            }
        },
        None if is_bad(LinkField::Provider) => None,
        None => {
            ctx.problem(
                fpath(LinkField::Provider),
                name,
                "`provider` is required: set AWS, AZURE or GCP in the link or in the project's `defaults`".into(),
            );
            None
        }
    };
    let vendor = match get_str(LinkField::Vendor) {
        Some((s, o)) => match (Vendor::parse(s), provider) {
            (Some(v), Some(p)) if !p.vendors().contains(&v) => {
                ctx.problem(
                    fpath(LinkField::Vendor),
                    name,
                    format!(
                        "`{}` is not a vendor for {p}: use one of {} (or omit it for GENERIC){}",
                        quote(s),
                        vendor_list(p),
                        origin_note(o)
                    ),
                );
                None
            }
            (Some(v), _) => Some(v),
            (None, p) => {
                let choices = match p {
                    Some(p) => vendor_list(p),
                    None => Vendor::ALL
                        .iter()
                        .map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                ctx.problem(
                    fpath(LinkField::Vendor),
                    name,
                    format!(
                        "`{}` is not a vendor: use one of {choices}{}",
                        quote(s),
                        origin_note(o)
                    ),
                );
                None
            }
        },
        None if is_bad(LinkField::Vendor) => None,
        None => Some(Vendor::Generic),
    };
    let auth = match get_str(LinkField::AuthenticationScheme) {
        Some((s, o)) => match AuthScheme::parse(s) {
            Some(a) => Some(a),
            None => {
                ctx.problem(
                    fpath(LinkField::AuthenticationScheme),
                    name,
                    format!(
                        "`{}` is not an authentication scheme: use TLS, SASL_SCRAM or IAM{}",
                        quote(s),
                        origin_note(o)
                    ),
                );
                ok = false;
                None
            }
        },
        None => None,
    };
    if let Some((arn, o)) = get_str(LinkField::Arn)
        && !arn.starts_with("arn:aws:kafka")
    {
        ctx.problem(
            fpath(LinkField::Arn),
            name,
            format!(
                "`{}` must start with `arn:aws:kafka` (the ARN of an MSK cluster){}",
                quote(arn),
                origin_note(o)
            ),
        );
        ok = false;
    }
    let (Some(provider), Some(vendor)) = (provider, vendor) else {
        return None;
    };
    for &field in required_fields(provider, vendor) {
        if fields.get(field).is_none() {
            let hint = if field == LinkField::DnsSubDomain {
                " (write `dnsSubDomain: []` when the cluster has no subdomains)"
            } else {
                ""
            };
            ctx.problem(
                fpath(field),
                name,
                format!(
                    "`{}` is required for {provider} {vendor} links{hint}",
                    field.key()
                ),
            );
            ok = false;
        }
    }
    for (field, why) in forbidden_fields(provider, vendor) {
        if let Some((_, o)) = fields.get(field) {
            ctx.problem(
                fpath(field),
                name,
                format!(
                    "`{}` must not be set on {provider} {vendor} links: {why}; remove it{}",
                    field.key(),
                    origin_note(*o)
                ),
            );
            ok = false;
        }
    }
    if (provider, vendor) == (Provider::Gcp, Vendor::Confluent)
        && let Some((FieldVal::List(uris), o)) = fields.get(LinkField::GcpServiceAttachmentUris)
        && uris.len() != 1
        && uris.len() != 3
    {
        ctx.problem(
            fpath(LinkField::GcpServiceAttachmentUris),
            name,
            format!(
                "GCP CONFLUENT takes 1 or 3 service attachment URIs (one per zone), found {}{}",
                uris.len(),
                origin_note(*o)
            ),
        );
        ok = false;
    }
    if !ok {
        return None;
    }
    let s = |f: LinkField| get_str(f).map(|(s, _)| s.to_owned());
    let l = |f: LinkField| match fields.get(f) {
        Some((FieldVal::List(v), _)) => Some(v.clone()),
        _ => None,
    };
    Some(LinkSpec {
        provider,
        vendor,
        region: s(LinkField::Region),
        arn: s(LinkField::Arn),
        service_endpoint_id: s(LinkField::ServiceEndpointId),
        dns_domain: s(LinkField::DnsDomain),
        dns_sub_domain: l(LinkField::DnsSubDomain),
        azure_resource_ids: l(LinkField::AzureResourceIds),
        gcp_connection_ids: l(LinkField::GcpConnectionIds),
        gcp_service_attachment_uris: l(LinkField::GcpServiceAttachmentUris),
        authentication_scheme: auth,
    })
}

fn vendor_list(p: Provider) -> String {
    p.vendors()
        .iter()
        .filter(|v| **v != Vendor::Generic)
        .map(|v| v.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn group_id_message(value: &str) -> String {
    let hex = value.bytes().all(|b| b.is_ascii_hexdigit());
    let s = quote(value);
    if value.len() == 24 && hex {
        format!(
            "`{s}` has upper-case letters: Atlas project ids are lower-case hex; write `{}`",
            value.to_ascii_lowercase()
        )
    } else if !hex {
        format!(
            "`{s}` is not an Atlas project id: expected 24 lower-case hex digits (0-9, a-f), as in the project's Atlas URL"
        )
    } else {
        format!(
            "`{s}` has {} digits; an Atlas project id has 24 lower-case hex digits",
            value.len()
        )
    }
}
