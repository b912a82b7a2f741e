//! Paging over one project's listing: `Pager`, one API call per page, and `AtlasClient::list`.

use std::fmt;
use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use super::{ApiError, AtlasClient, ErrorClass, Operation, RateLimitInfo};
use crate::model::{GroupId, RemoteConnection};

/// `itemsPerPage` of `pager` and `list`: Atlas's maximum.
pub(crate) const DEFAULT_ITEMS_PER_PAGE: u32 = 500;
/// A listing that has not ended after this many pages is refused rather than followed forever.
pub(crate) const MAX_PAGES: u32 = 2_000;

impl AtlasClient {
    /// Pages through a project's connections, `DEFAULT_ITEMS_PER_PAGE` at a time.
    pub fn pager(&self, group: &GroupId) -> Pager {
        self.pager_with_page_size(group, DEFAULT_ITEMS_PER_PAGE)
    }

    pub fn pager_with_page_size(&self, group: &GroupId, items_per_page: u32) -> Pager {
        Pager {
            client: self.clone(),
            group: group.clone(),
            items_per_page: items_per_page.clamp(1, 500),
            next_page_num: 1,
            items: Vec::new(),
            seen: Seen::default(),
            done: false,
            rate_limit: RateLimitInfo::default(),
        }
    }

    /// Every connection of a project, all pages. Any failed page fails the whole listing.
    pub async fn list(&self, group: &GroupId) -> Result<Vec<RemoteConnection>, ApiError> {
        let mut pager = self.pager(group);
        while pager.advance().await?.is_some() {}
        Ok(pager.into_items())
    }
}

/// Paging state for one project's listing. `next_page` is one API call; a failed call does not
/// advance, so the executor can call it again under its own rate limiter and retry policy.
///
/// Stop rules: more pages while the page has a `next` link or fewer than `totalCount` items have
/// been paged past; with neither signal, while pages come back full. An empty page always ends
/// the listing. A short page that still carries a `next` link is followed: one extra call is cheap,
/// a listing that is silently partial is not. A page that brings no id not seen before but still
/// says there are more is an error (unless `totalCount` is reached): the paging goes in circles.
pub struct Pager {
    client: AtlasClient,
    group: GroupId,
    items_per_page: u32,
    next_page_num: u32,
    items: Vec<RemoteConnection>,
    /// Which ids `items` holds, as indexes into it.
    seen: Seen,
    done: bool,
    rate_limit: RateLimitInfo,
}

impl fmt::Debug for Pager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pager")
            .field("group", &self.group)
            .field("items_per_page", &self.items_per_page)
            .field("next_page_num", &self.next_page_num)
            .field("collected", &self.items.len())
            .field("done", &self.done)
            .finish()
    }
}

impl Pager {
    /// The next page's connections, or `None` once the listing is complete.
    pub async fn next_page(&mut self) -> Result<Option<Vec<RemoteConnection>>, ApiError> {
        let Some(items) = self.fetch().await? else {
            return Ok(None);
        };
        for item in &items {
            if !self.seen.contains(&self.items, &item.id) {
                self.keep(item.clone());
            }
        }
        Ok(Some(items))
    }

    /// `next_page` for a caller that wants only the whole listing (`into_items`): the page's size,
    /// its connections moved into the listing rather than copied.
    pub(crate) async fn advance(&mut self) -> Result<Option<usize>, ApiError> {
        let Some(items) = self.fetch().await? else {
            return Ok(None);
        };
        let n = items.len();
        self.items.reserve(n);
        for item in items {
            if !self.seen.contains(&self.items, &item.id) {
                self.keep(item);
            }
        }
        Ok(Some(n))
    }

    /// Adds `item`, whose id the listing does not hold yet.
    fn keep(&mut self, item: RemoteConnection) {
        self.seen.insert(&self.items, &item.id, self.items.len());
        self.items.push(item);
    }

    /// One page, or `None` once the listing is complete; the paging state advances, the caller
    /// collects the items (without repeats: offset paging can show an item twice when the set
    /// shifts between pages).
    async fn fetch(&mut self) -> Result<Option<Vec<RemoteConnection>>, ApiError> {
        if self.done {
            return Ok(None);
        }
        if self.next_page_num > MAX_PAGES {
            return Err(
                ApiError::new(Operation::List, Some(&self.group), ErrorClass::Permanent)
                    .what(format!(
                        "the listing did not end after {MAX_PAGES} pages of {}",
                        self.items_per_page
                    ))
                    .advice(
                        "Atlas's paging looks broken; report it, the listing cannot be trusted",
                    ),
            );
        }
        let answer = self
            .client
            .list_page(&self.group, self.next_page_num, self.items_per_page)
            .await?;
        self.rate_limit = answer.rate_limit;
        let page = answer.value;
        let n = page.items.len() as u64;
        let paged_past = u64::from(self.next_page_num - 1) * u64::from(self.items_per_page) + n;
        let more = n > 0
            && (page.has_next
                || page.total_count.is_some_and(|t| paged_past < t)
                || (page.total_count.is_none() && n >= u64::from(self.items_per_page)));
        // Only a page that says there are more needs to bring something new (see below).
        if more
            && page
                .items
                .iter()
                .all(|c| self.seen.contains(&self.items, &c.id))
        {
            // A page of nothing new that still says "more" (a `next` link back to itself, a
            // server ignoring `pageNum`) would repeat until MAX_PAGES. Ending there would call a
            // listing complete that nothing proves complete, and a connection never listed gets
            // created again; so it is an error (the project's links stay unverified this pass),
            // unless Atlas's own `totalCount` says every connection was already seen.
            if page
                .total_count
                .is_some_and(|t| self.items.len() as u64 >= t)
            {
                self.done = true;
                return Ok(Some(page.items));
            }
            return Err(
                ApiError::new(Operation::List, Some(&self.group), ErrorClass::Permanent)
                    .what(format!(
                        "page {} of the listing brought no connection that earlier pages had not, yet said there were more (a `next` link back to the same items)",
                        self.next_page_num
                    ))
                    .advice(
                        "Atlas's paging looks broken; report it: the listing cannot be trusted, so this project's links stay unverified and nothing is created in it",
                    ),
            );
        }
        self.next_page_num += 1;
        self.done = !more;
        Ok(Some(page.items))
    }

    /// Whether the listing is complete: no further call would be made. A caller that admits each
    /// call (a rate limiter, a concurrency slot) asks this first, so the end of a listing costs no
    /// slot, and the collected listing does not wait in the queue for one.
    pub(crate) fn is_complete(&self) -> bool {
        self.done
    }

    /// Rate-limit headers of the last page.
    pub(crate) fn rate_limit(&self) -> RateLimitInfo {
        self.rate_limit
    }

    /// Everything collected so far (all of it once `next_page` returned `None`), without repeats.
    pub fn into_items(self) -> Vec<RemoteConnection> {
        self.items
    }
}

/// The ids of a listing, as indexes into its items: each id is hashed where it lies, never copied
/// (a listing can hold a million). SipHash with a random key, since the ids come from a server.
#[derive(Default)]
struct Seen {
    table: HashTable<usize>,
    hasher: RandomState,
}

impl Seen {
    fn contains(&self, items: &[RemoteConnection], id: &str) -> bool {
        let hash = self.hasher.hash_one(id);
        self.table.find(hash, |&i| items[i].id == id).is_some()
    }

    /// Records that `items[index]` (about to be pushed) has `id`.
    fn insert(&mut self, items: &[RemoteConnection], id: &str, index: usize) {
        let hasher = &self.hasher;
        self.table.insert_unique(hasher.hash_one(id), index, |&i| {
            hasher.hash_one(&items[i].id)
        });
    }
}
