//! Lists: tags (with `Link` pagination and `n`/`last`), the catalog, and referrers (the API,
//! with the tag-schema fallback).

use crate::auth::{repo_scope, MAX_TOKEN_ANSWER};
use crate::body::{expect_status, read_capped};
use crate::client::{Client, Endpoint, Req};
use crate::error::{Error, Result};
use crate::pull::header_str;
use crate::repository::Repository;
use oci_rs_image::media::OCI_INDEX;
use oci_rs_image::{ManifestRef, MAX_MANIFEST_SIZE};
use oci_spec::image::{Descriptor, Digest, ImageIndex};
use reqwest::header::{ACCEPT, LINK};
use reqwest::{Method, Url};

/// The largest JSON list answer (one page) we read.
pub const MAX_JSON_ANSWER: u64 = MAX_TOKEN_ANSWER;

/// How many pages a full listing follows at most.
const MAX_PAGES: usize = 100_000;

/// One page of a tags or catalog listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The names on this page (`null` in the answer is an empty page).
    pub items: Vec<String>,
    /// The `last` value to ask for the next page, when the registry said there is one.
    pub next_last: Option<String>,
    next: Option<Url>,
}

#[derive(serde::Deserialize)]
struct TagsBody {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(serde::Deserialize)]
struct CatalogBody {
    #[serde(default)]
    repositories: Option<Vec<String>>,
}

/// The `rel="next"` target of a `Link` header, resolved against `base`, same origin only.
fn next_link(base: &Url, link: Option<&str>) -> Result<Option<Url>> {
    let Some(link) = link else { return Ok(None) };
    for part in link.split(',') {
        let part = part.trim();
        let Some(rest) = part.strip_prefix('<') else {
            continue;
        };
        let Some((target, params)) = rest.split_once('>') else {
            continue;
        };
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        if !is_next {
            continue;
        }
        let url = base.join(target).map_err(|_| Error::RefusedUrl {
            url: target.chars().take(200).collect(),
            reason: "invalid Link target".into(),
        })?;
        if url.origin() != base.origin() {
            return Err(Error::RefusedUrl {
                url: crate::error::redact(&url),
                reason: "Link points to another origin".into(),
            });
        }
        return Ok(Some(url));
    }
    Ok(None)
}

impl Client {
    async fn list_page(
        &self,
        ep: &Endpoint,
        url: Url,
        scope: String,
        catalog: bool,
    ) -> Result<Page> {
        let resp = expect_status(
            self.send(ep, Req::new(Method::GET, url, vec![scope]))
                .await?,
            &[200],
        )
        .await?;
        let base = resp.url().clone();
        let next = next_link(&base, header_str(resp.headers(), LINK.as_str()))?;
        let body = read_capped(resp, MAX_JSON_ANSWER).await?;
        let items = if catalog {
            serde_json::from_slice::<CatalogBody>(&body).map(|b| b.repositories)
        } else {
            serde_json::from_slice::<TagsBody>(&body).map(|b| b.tags)
        }
        .map_err(|e| Error::invalid(&base, format!("invalid list JSON: {e}")))?
        .unwrap_or_default();
        let next_last = next.as_ref().and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "last")
                .map(|(_, v)| v.into_owned())
        });
        Ok(Page {
            items,
            next_last,
            next,
        })
    }

    fn list_url(ep: &Endpoint, path: &str, n: Option<usize>, last: Option<&str>) -> Result<Url> {
        let mut url = ep.url(path)?;
        if n.is_some() || last.is_some() {
            let mut q = url.query_pairs_mut();
            if let Some(n) = n {
                q.append_pair("n", &n.to_string());
            }
            if let Some(l) = last {
                q.append_pair("last", l);
            }
        }
        Ok(url)
    }

    /// One page of the tags of a repository (`n` per page, after `last`).
    pub async fn tags_page(
        &self,
        repo: &Repository,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<Page> {
        let ep = self.endpoint_for(repo)?;
        let url = Self::list_url(&ep, &format!("v2/{}/tags/list", repo.name()), n, last)?;
        self.list_page(&ep, url, repo_scope(repo.name(), "pull"), false)
            .await
    }

    /// Every tag of a repository, following `Link` pages of `page_size` (the registry's
    /// default when `None`).
    pub async fn tags(&self, repo: &Repository, page_size: Option<usize>) -> Result<Vec<String>> {
        let ep = self.endpoint_for(repo)?;
        let url = Self::list_url(
            &ep,
            &format!("v2/{}/tags/list", repo.name()),
            page_size,
            None,
        )?;
        self.list_all(&ep, url, repo_scope(repo.name(), "pull"), false)
            .await
    }

    /// One page of the catalog (`n` per page, after `last`).
    pub async fn catalog_page(
        &self,
        registry: &str,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<Page> {
        let ep = self.endpoint(registry)?;
        let url = Self::list_url(&ep, "v2/_catalog", n, last)?;
        self.list_page(&ep, url, "registry:catalog:*".into(), true)
            .await
    }

    /// Every repository of a registry (`GET /v2/_catalog`), following `Link` pages.
    pub async fn catalog(&self, registry: &str, page_size: Option<usize>) -> Result<Vec<String>> {
        let ep = self.endpoint(registry)?;
        let url = Self::list_url(&ep, "v2/_catalog", page_size, None)?;
        self.list_all(&ep, url, "registry:catalog:*".into(), true)
            .await
    }

    async fn list_all(
        &self,
        ep: &Endpoint,
        first: Url,
        scope: String,
        catalog: bool,
    ) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut url = Some(first);
        let mut seen = std::collections::HashSet::new();
        while let Some(u) = url.take() {
            if !seen.insert(u.to_string()) || seen.len() > MAX_PAGES {
                return Err(Error::invalid(&u, "pagination loops or never ends"));
            }
            let page = self.list_page(ep, u, scope.clone(), catalog).await?;
            out.extend(page.items);
            url = page.next;
        }
        Ok(out)
    }

    /// The manifests that refer to `subject` (their `subject` field), optionally only those
    /// of one artifact type. Uses the referrers API and, when the registry answers 404, the
    /// `sha256-<hex>` tag schema.
    pub async fn referrers(
        &self,
        repo: &Repository,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        oci_rs_image::check_digest_algorithm(subject)?;
        let ep = self.endpoint_for(repo)?;
        let mut url = ep.url(&format!("v2/{}/referrers/{subject}", repo.name()))?;
        if let Some(t) = artifact_type {
            url.query_pairs_mut().append_pair("artifactType", t);
        }
        let req = Req::new(Method::GET, url, vec![repo_scope(repo.name(), "pull")])
            .header(ACCEPT, OCI_INDEX)?;
        let resp = self.send(&ep, req).await?;
        let index: ImageIndex = if resp.status().as_u16() == 404 {
            match self
                .manifest(repo, &ManifestRef::Tag(referrers_tag(subject)?))
                .await
            {
                Ok(m) => match m.as_index() {
                    Some(i) => i.clone(),
                    None => return Err(Error::invalid(&ep.base, "referrers tag is not an index")),
                },
                Err(e) if e.is_not_found() => return Ok(Vec::new()),
                Err(e) => return Err(e),
            }
        } else {
            let resp = expect_status(resp, &[200]).await?;
            let url = resp.url().clone();
            let body = read_capped(resp, MAX_MANIFEST_SIZE).await?;
            serde_json::from_slice(&body)
                .map_err(|e| Error::invalid(&url, format!("invalid referrers index: {e}")))?
        };
        Ok(index
            .manifests()
            .iter()
            .filter(|d| {
                artifact_type.is_none_or(|t| {
                    d.artifact_type()
                        .as_ref()
                        .is_some_and(|a| a.to_string() == t)
                })
            })
            .cloned()
            .collect())
    }
}

/// The fallback tag for a subject's referrers: `<alg>-<hex>`.
pub fn referrers_tag(subject: &Digest) -> Result<String> {
    let (alg, hex) = oci_rs_image::digest_path_components(subject)?;
    let mut t = format!("{alg}-{hex}");
    t.truncate(128);
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_forms() {
        let base = Url::parse("http://r:5000/v2/a/tags/list?n=1").unwrap();
        let n = next_link(&base, Some(r#"</v2/a/tags/list?last=b&n=1>; rel="next""#))
            .unwrap()
            .unwrap();
        assert_eq!(n.as_str(), "http://r:5000/v2/a/tags/list?last=b&n=1");
        assert!(next_link(&base, Some(r#"</x>; rel="prev""#))
            .unwrap()
            .is_none());
        assert!(next_link(&base, None).unwrap().is_none());
        let e =
            next_link(&base, Some(r#"<http://evil:1/v2/a/tags/list>; rel="next""#)).unwrap_err();
        assert!(matches!(e, Error::RefusedUrl { .. }));
    }

    #[test]
    fn fallback_tag_name() {
        let d = oci_rs_image::sha256(b"x");
        let t = referrers_tag(&d).unwrap();
        assert!(t.starts_with("sha256-") && t.len() == 71);
        crate::repository::validate_tag(&t).unwrap();
    }
}
