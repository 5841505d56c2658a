//! Virtual-host-style addressing.
//!
//! s3s's own `MultiDomain` treats any host that is not under a base domain as a CNAME bucket,
//! which breaks path-style requests to a host name we were not told about (a Docker service
//! name, a load balancer). Ours only takes the bucket from `<bucket>.<base domain>` and treats
//! every other host as path-style. The port is ignored.

use s3s::host::{S3Host, VirtualHost};
use s3s::S3Result;

use crate::S3SetupError;

#[derive(Debug)]
pub(crate) struct CairnHost {
    /// Lower-case base domains without a port, longest first so the most specific wins.
    domains: Vec<String>,
}

impl CairnHost {
    pub(crate) fn new(domains: &[String]) -> Result<Self, S3SetupError> {
        let mut out = Vec::with_capacity(domains.len());
        for d in domains {
            let host = strip_port(d.trim()).to_ascii_lowercase();
            let valid = !host.is_empty()
                && host.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !valid {
                return Err(S3SetupError::InvalidDomain {
                    domain: d.clone(),
                    reason: "expected a DNS name such as s3.example.com".to_owned(),
                });
            }
            if !out.contains(&host) {
                out.push(host);
            }
        }
        out.sort_by_key(|d| std::cmp::Reverse(d.len()));
        Ok(Self { domains: out })
    }

    /// The bucket named by `host`, if it is `<bucket>.<base domain>`.
    pub(crate) fn bucket_of(&self, host: &str) -> Option<String> {
        let host = strip_port(host).to_ascii_lowercase();
        for d in &self.domains {
            if host == *d {
                return None;
            }
            if let Some(bucket) = host
                .strip_suffix(d.as_str())
                .and_then(|h| h.strip_suffix('.'))
            {
                if !bucket.is_empty() {
                    return Some(bucket.to_owned());
                }
            }
        }
        None
    }
}

impl S3Host for CairnHost {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        match self.bucket_of(host) {
            Some(bucket) => Ok(VirtualHost::new(strip_port(host)).with_bucket(bucket)),
            None => Ok(VirtualHost::new(strip_port(host))),
        }
    }
}

/// `host:port` → `host`; IPv6 literals (`[::1]:9000`) keep their brackets.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(d: &[&str]) -> CairnHost {
        CairnHost::new(&d.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn buckets_from_subdomains() {
        let h = host(&["localhost", "s3.example.com"]);
        assert_eq!(h.bucket_of("localhost:9000"), None);
        assert_eq!(h.bucket_of("localhost"), None);
        assert_eq!(
            h.bucket_of("photos.localhost:9000").as_deref(),
            Some("photos")
        );
        assert_eq!(
            h.bucket_of("my.dotted.bucket.s3.example.com").as_deref(),
            Some("my.dotted.bucket")
        );
        assert_eq!(h.bucket_of("S3.Example.COM"), None);
        // unknown hosts are path-style, not CNAME buckets
        assert_eq!(h.bucket_of("cairn:9000"), None);
        assert_eq!(h.bucket_of("notlocalhost"), None);
        assert_eq!(h.bucket_of("[::1]:9000"), None);
    }

    #[test]
    fn rejects_bad_domains() {
        assert!(CairnHost::new(&["".to_owned()]).is_err());
        assert!(CairnHost::new(&["a..b".to_owned()]).is_err());
        assert!(CairnHost::new(&["a_b.com".to_owned()]).is_err());
        assert!(CairnHost::new(&["localhost:9000".to_owned()]).is_ok());
    }
}
