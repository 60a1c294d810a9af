//! The stored blocks, found by subject in O(log n) on every send and by id for the admin API;
//! at most [`MAX_BLOCKS`], the one that ends first dropped at the cap.

use std::collections::{BTreeMap, HashMap};

use super::{Block, BlockKind, BlockReason};

/// At most this many blocks are kept; at the cap the one that ends first is dropped.
pub const MAX_BLOCKS: usize = 10_000;

type BlockKey = (BlockKind, String, BlockReason);

#[derive(Default)]
pub struct BlockTable {
    by_subject: BTreeMap<BlockKey, Block>,
    ids: HashMap<String, BlockKey>,
}

fn in_force(block: &Block, now: i64) -> bool {
    block.until.is_none_or(|until| until > now)
}

impl BlockTable {
    pub fn len(&self) -> usize {
        self.by_subject.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_subject.is_empty()
    }

    /// The block in force for this subject and reason.
    pub fn in_force(
        &self,
        kind: BlockKind,
        subject: &str,
        reason: BlockReason,
        now: i64,
    ) -> Option<&Block> {
        self.by_subject
            .get(&(kind, subject.to_owned(), reason))
            .filter(|block| in_force(block, now))
    }

    /// A block in force on this subject, whatever its reason.
    pub fn in_force_on_mut(
        &mut self,
        kind: BlockKind,
        subject: &str,
        now: i64,
    ) -> Option<&mut Block> {
        let first = (kind, subject.to_owned(), BlockReason::IpVelocity);
        let last = (kind, subject.to_owned(), BlockReason::RecipientBackoff);
        self.by_subject
            .range_mut(first..=last)
            .map(|(_, block)| block)
            .find(|block| in_force(block, now))
    }

    /// Stores `block` (replacing one on the same subject and reason); at the cap, blocks that
    /// ended go first, then the one that ends first.
    pub fn insert(&mut self, block: Block, now: i64) {
        let key = (block.kind, block.subject.clone(), block.reason);
        if let Some(replaced) = self.by_subject.remove(&key) {
            self.ids.remove(&replaced.id);
        }
        if self.by_subject.len() >= MAX_BLOCKS {
            self.drop_ended(now);
        }
        while self.by_subject.len() >= MAX_BLOCKS {
            let ending_first = self
                .by_subject
                .iter()
                .min_by_key(|(_, block)| block.until.unwrap_or(i64::MAX))
                .map(|(key, _)| key.clone());
            let Some(ending_first) = ending_first else {
                break;
            };
            if let Some(dropped) = self.by_subject.remove(&ending_first) {
                self.ids.remove(&dropped.id);
            }
        }
        self.ids.insert(block.id.clone(), key.clone());
        self.by_subject.insert(key, block);
    }

    pub fn get_mut_by_id(&mut self, id: &str) -> Option<&mut Block> {
        let key = self.ids.get(id)?;
        self.by_subject.get_mut(key)
    }

    /// Removes and returns the blocks `matches` picks.
    pub fn remove_where(&mut self, matches: impl Fn(&Block) -> bool) -> Vec<Block> {
        let keys: Vec<BlockKey> = self
            .by_subject
            .iter()
            .filter(|(_, block)| matches(block))
            .map(|(key, _)| key.clone())
            .collect();
        keys.iter()
            .filter_map(|key| self.by_subject.remove(key))
            .inspect(|block| {
                self.ids.remove(&block.id);
            })
            .collect()
    }

    /// Removes the block with this id.
    pub fn remove_by_id(&mut self, id: &str) -> Option<Block> {
        let key = self.ids.remove(id)?;
        self.by_subject.remove(&key)
    }

    /// Forgets blocks that ended.
    pub fn drop_ended(&mut self, now: i64) {
        let ids = &mut self.ids;
        self.by_subject.retain(|_, block| {
            let keep = in_force(block, now);
            if !keep {
                ids.remove(&block.id);
            }
            keep
        });
    }

    pub fn iter(&self) -> impl Iterator<Item = &Block> {
        self.by_subject.values()
    }
}
