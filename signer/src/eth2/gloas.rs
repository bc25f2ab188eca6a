//! Gloas (EIP-7732, enshrined proposer–builder separation): the five
//! messages a validator or a builder signs from that fork on, in spec field
//! order, and the progressive merkleization (EIP-7916 lists, EIP-7495
//! containers) their roots need, which the `tree_hash` crate does not have.
//!
//! Progressive types serialise as their classic counterparts; only the root
//! differs. A progressive list's limit does not enter its root, so none of
//! these types depends on the preset. Roots are checked against Lodestar's
//! SSZ types (`tests/tests/gloas.rs`).

use alloy_primitives::{Address, B256};
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};
use ssz_types::VariableList;
use ssz_types::typenum::{U2, U16, U64, U4096, U1048576, U1073741824, Unsigned};
use std::marker::PhantomData;

/// The limit of a list the spec leaves unbounded (EIP-7916 lists hold at
/// most 2^32 − 1 items; a request's size bounds it long before).
pub type Unbounded = ssz_types::typenum::U4294967296;
use tree_hash::{Hash256, PackedEncoding, TreeHash, TreeHashType, merkle_root, mix_in_length};
use tree_hash_derive::TreeHash;

use super::blocks::{
    ConsolidationRequest, DepositRequest, KzgCommitment, SignedBlsToExecutionChange, Withdrawal,
    WithdrawalRequest,
};
use super::containers::{
    AttestationData, Deposit, Eth1Data, ProposerSlashing, PublicKeyBytes, SignatureBytes,
    SignedVoluntaryExit, SyncAggregate,
};
use super::preset::Preset;
use ssz_types::{BitList, BitVector};

fn hash_pair(a: &[u8], b: &[u8]) -> Hash256 {
    let mut h = Sha256::new();
    h.update(a);
    h.update(b);
    Hash256::from_slice(&h.finalize())
}

/// `merkleize_progressive(chunks)` of EIP-7916 over the chunks packed in
/// `bytes` (the last one zero-padded): the first chunk is a subtree of one
/// leaf, the next four a subtree of four, then 16, …; each level is
/// `hash(root of this subtree, root of the rest)` — the subtree on the left
/// (generalized index 2), the rest on the right (3), a zero chunk after the
/// last subtree.
pub fn merkleize_progressive(bytes: &[u8]) -> Hash256 {
    fn level(bytes: &[u8], leaves: usize) -> Hash256 {
        if bytes.is_empty() {
            return Hash256::ZERO;
        }
        let (this, rest) = bytes.split_at(bytes.len().min(leaves.saturating_mul(32)));
        let rest = level(rest, leaves.saturating_mul(4));
        hash_pair(merkle_root(this, leaves).as_slice(), rest.as_slice())
    }
    level(bytes, 1)
}

/// `mix_in_active_fields(root, active_fields)` of EIP-7495 for a container
/// whose first `fields` fields are all active (every Gloas container is).
fn mix_in_active_fields(root: Hash256, fields: usize) -> Hash256 {
    let mut bits = [0u8; 32];
    for (i, byte) in bits.iter_mut().enumerate() {
        let set = fields.saturating_sub(i * 8).min(8);
        *byte = ((1u16 << set) - 1) as u8;
    }
    hash_pair(root.as_slice(), &bits)
}

macro_rules! not_packed {
    () => {
        fn tree_hash_packed_encoding(&self) -> PackedEncoding {
            unreachable!("a composite type is never packed")
        }
        fn tree_hash_packing_factor() -> usize {
            unreachable!("a composite type is never packed")
        }
    };
}

/// `ProgressiveList[T, N]` (EIP-7916): a JSON array of at most `N` items.
/// The limit is checked when the list is read and does not enter its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressiveList<T, N>(pub Vec<T>, PhantomData<N>);

impl<'de, T: Deserialize<'de>, N: Unsigned> Deserialize<'de> for ProgressiveList<T, N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items = Vec::<T>::deserialize(d)?;
        if items.len() > N::to_usize() {
            return Err(serde::de::Error::custom(format!(
                "{} items, over the limit of {}",
                items.len(),
                N::to_usize()
            )));
        }
        Ok(Self(items, PhantomData))
    }
}

impl<T: TreeHash, N> TreeHash for ProgressiveList<T, N> {
    fn tree_hash_type() -> TreeHashType {
        TreeHashType::List
    }
    not_packed!();
    fn tree_hash_root(&self) -> Hash256 {
        let mut bytes = Vec::new();
        for item in &self.0 {
            match T::tree_hash_type() {
                TreeHashType::Basic => bytes.extend_from_slice(&item.tree_hash_packed_encoding()),
                _ => bytes.extend_from_slice(item.tree_hash_root().as_slice()),
            }
        }
        mix_in_length(&merkleize_progressive(&bytes), self.0.len())
    }
}

/// `ProgressiveByteList[N]` (EIP-7916): a `0x` hex string of at most `N` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressiveBytes<N>(pub Vec<u8>, PhantomData<N>);

impl<'de, N: Unsigned> Deserialize<'de> for ProgressiveBytes<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let digits = s
            .strip_prefix("0x")
            .ok_or_else(|| serde::de::Error::custom("expected a 0x-prefixed hex string"))?;
        let bytes =
            hex::decode(digits).map_err(|e| serde::de::Error::custom(format!("not hex: {e}")))?;
        if bytes.len() > N::to_usize() {
            return Err(serde::de::Error::custom(format!(
                "{} bytes, over the limit of {}",
                bytes.len(),
                N::to_usize()
            )));
        }
        Ok(Self(bytes, PhantomData))
    }
}

impl<N> TreeHash for ProgressiveBytes<N> {
    fn tree_hash_type() -> TreeHashType {
        TreeHashType::List
    }
    not_packed!();
    fn tree_hash_root(&self) -> Hash256 {
        mix_in_length(&merkleize_progressive(&self.0), self.0.len())
    }
}

/// A progressive container (EIP-7495) with every field active: the root of
/// its fields' roots, merkleized progressively, mixed with the active-field
/// bits.
macro_rules! progressive_container {
    ($(#[$m:meta])* $name:ident $(<$p:ident>)? { $($(#[$fm:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Deserialize)]
        #[serde(bound = "")]
        pub struct $name $(<$p: Preset>)? {
            $($(#[$fm])* pub $field: $ty,)*
        }

        impl$(<$p: Preset>)? TreeHash for $name$(<$p>)? {
            fn tree_hash_type() -> TreeHashType {
                TreeHashType::Container
            }
            not_packed!();
            fn tree_hash_root(&self) -> Hash256 {
                let mut chunks = Vec::new();
                let mut fields = 0;
                $(
                    chunks.extend_from_slice(self.$field.tree_hash_root().as_slice());
                    fields += 1;
                )*
                mix_in_active_fields(merkleize_progressive(&chunks), fields)
            }
        }
    };
}

/// `PayloadAttestationData`: what a payload-timeliness committee member
/// signs (the message's `validator_index` is not signed).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, TreeHash)]
pub struct PayloadAttestationData {
    /// The block whose payload is attested.
    pub beacon_block_root: B256,
    /// Its slot.
    #[serde(with = "serde_utils::quoted_u64")]
    pub slot: u64,
    /// Whether the payload was revealed in time.
    pub payload_present: bool,
    /// Whether its blob data was available.
    pub blob_data_available: bool,
}

/// `ProposerPreferences`: the fee recipient and gas-limit target a proposer
/// asks builders for at one of its proposal slots.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, TreeHash)]
pub struct ProposerPreferences {
    /// The root the proposer duties were computed from.
    pub dependent_root: B256,
    /// The slot of the proposal.
    #[serde(with = "serde_utils::quoted_u64")]
    pub proposal_slot: u64,
    /// The proposer.
    #[serde(with = "serde_utils::quoted_u64")]
    pub validator_index: u64,
    /// Where the payload must pay.
    pub fee_recipient: Address,
    /// The gas limit to aim at.
    #[serde(with = "serde_utils::quoted_u64")]
    pub target_gas_limit: u64,
}

/// `BuilderRequestAuth` (builder specs): a proposer's authorisation of a
/// request to a builder, bound to a slot. `data` is opaque to the signer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, TreeHash)]
pub struct BuilderRequestAuth {
    /// What the request authorises (`MAX_BUILDER_AUTH_DATA_SIZE` = 4096 bytes).
    #[serde(with = "ssz_types::serde_utils::hex_var_list")]
    pub data: VariableList<u8, U4096>,
    /// The proposal slot it applies to.
    #[serde(with = "serde_utils::quoted_u64")]
    pub slot: u64,
}

progressive_container!(
    /// `ExecutionPayloadBid`: a builder's offer to build the payload of a slot.
    ExecutionPayloadBid {
        /// Parent execution block hash.
        parent_block_hash: B256,
        /// Parent beacon block root.
        parent_block_root: B256,
        /// The payload's block hash.
        block_hash: B256,
        /// RANDAO mix.
        prev_randao: B256,
        /// The payload's fee recipient.
        fee_recipient: Address,
        /// The payload's gas limit.
        #[serde(with = "serde_utils::quoted_u64")]
        gas_limit: u64,
        /// The builder.
        #[serde(with = "serde_utils::quoted_u64")]
        builder_index: u64,
        /// The slot.
        #[serde(with = "serde_utils::quoted_u64")]
        slot: u64,
        /// What the builder pays in the beacon chain (Gwei).
        #[serde(with = "serde_utils::quoted_u64")]
        value: u64,
        /// What the builder pays in the execution layer (Gwei).
        #[serde(with = "serde_utils::quoted_u64")]
        execution_payment: u64,
        /// Blob commitments.
        blob_kzg_commitments: ProgressiveList<KzgCommitment, U4096>,
        /// Root of the execution requests.
        execution_requests_root: B256,
    }
);

/// `BuilderDepositRequest` (EIP-8282).
#[derive(Debug, Clone, Deserialize, TreeHash)]
pub struct BuilderDepositRequest {
    /// Key.
    pub pubkey: PublicKeyBytes,
    /// Withdrawal credentials.
    pub withdrawal_credentials: B256,
    /// Gwei.
    #[serde(with = "serde_utils::quoted_u64")]
    pub amount: u64,
    /// Signature.
    pub signature: SignatureBytes,
}

/// `BuilderExitRequest` (EIP-8282).
#[derive(Debug, Clone, Deserialize, TreeHash)]
pub struct BuilderExitRequest {
    /// Who asks.
    pub source_address: Address,
    /// The builder.
    pub pubkey: PublicKeyBytes,
}

progressive_container!(
    /// `ExecutionRequests` of Gloas.
    ExecutionRequestsGloas {
        /// Deposits.
        deposits: ProgressiveList<DepositRequest, Unbounded>,
        /// Withdrawals.
        withdrawals: ProgressiveList<WithdrawalRequest, U16>,
        /// Consolidations.
        consolidations: ProgressiveList<ConsolidationRequest, U2>,
        /// Builder deposits.
        builder_deposits: ProgressiveList<BuilderDepositRequest, U64>,
        /// Builder exits.
        builder_exits: ProgressiveList<BuilderExitRequest, U16>,
    }
);

progressive_container!(
    /// `ExecutionPayload` of Gloas: Deneb's fields with progressive lists,
    /// then the block access list (EIP-7928) and the slot (EIP-7843).
    ExecutionPayloadGloas<P> {
        /// Parent block hash.
        parent_hash: B256,
        /// Who receives the priority fees.
        fee_recipient: Address,
        /// State root.
        state_root: B256,
        /// Receipts root.
        receipts_root: B256,
        /// Logs bloom (256 bytes).
        #[serde(with = "ssz_types::serde_utils::hex_fixed_vec")]
        logs_bloom: ssz_types::FixedVector<u8, ssz_types::typenum::U256>,
        /// RANDAO mix.
        prev_randao: B256,
        /// Block number.
        #[serde(with = "serde_utils::quoted_u64")]
        block_number: u64,
        /// Gas limit.
        #[serde(with = "serde_utils::quoted_u64")]
        gas_limit: u64,
        /// Gas used.
        #[serde(with = "serde_utils::quoted_u64")]
        gas_used: u64,
        /// Timestamp.
        #[serde(with = "serde_utils::quoted_u64")]
        timestamp: u64,
        /// Extra data (at most 32 bytes).
        #[serde(with = "ssz_types::serde_utils::hex_var_list")]
        extra_data: VariableList<u8, ssz_types::typenum::U32>,
        /// Base fee.
        #[serde(with = "serde_utils::u256_dec")]
        base_fee_per_gas: alloy_primitives::U256,
        /// Block hash.
        block_hash: B256,
        /// Transactions.
        transactions: ProgressiveList<ProgressiveBytes<U1073741824>, U1048576>,
        /// Withdrawals.
        withdrawals: ProgressiveList<Withdrawal, P::MaxWithdrawalsPerPayload>,
        /// Blob gas used.
        #[serde(with = "serde_utils::quoted_u64")]
        blob_gas_used: u64,
        /// Excess blob gas.
        #[serde(with = "serde_utils::quoted_u64")]
        excess_blob_gas: u64,
        /// Block access list (EIP-7928).
        block_access_list: ProgressiveBytes<Unbounded>,
        /// Slot (EIP-7843).
        #[serde(with = "serde_utils::quoted_u64")]
        slot_number: u64,
    }
);

progressive_container!(
    /// `ExecutionPayloadEnvelope`: a builder's reveal of the payload it bid for.
    ExecutionPayloadEnvelope<P> {
        /// The payload.
        payload: ExecutionPayloadGloas<P>,
        /// Its execution requests.
        execution_requests: ExecutionRequestsGloas,
        /// The builder.
        #[serde(with = "serde_utils::quoted_u64")]
        builder_index: u64,
        /// The beacon block that committed to the bid.
        beacon_block_root: B256,
        /// Its parent.
        parent_beacon_block_root: B256,
    }
);

/// `Attestation` of Gloas: Electra's fields in a progressive container, its
/// aggregation bits a progressive bitlist (what an aggregate-and-proof
/// signs from Gloas on).
#[derive(Debug, Clone, Deserialize)]
#[serde(bound = "")]
pub struct AttestationGloas<P: Preset> {
    /// Who attested, over all committees of the slot.
    pub aggregation_bits: BitList<P::MaxValidatorsPerSlot>,
    /// What.
    pub data: AttestationData,
    /// Aggregate signature.
    pub signature: SignatureBytes,
    /// Which committees.
    pub committee_bits: BitVector<P::MaxCommitteesPerSlot>,
}

impl<P: Preset> TreeHash for AttestationGloas<P> {
    fn tree_hash_type() -> TreeHashType {
        TreeHashType::Container
    }
    not_packed!();
    fn tree_hash_root(&self) -> Hash256 {
        // A progressive bitlist: its bits (no delimiter) merkleized
        // progressively, mixed with the number of bits.
        // (`as_slice` holds at least one byte, even for no bits.)
        let len = self.aggregation_bits.len();
        let bytes = self.aggregation_bits.as_slice();
        let bits = mix_in_length(
            &merkleize_progressive(bytes.get(..len.div_ceil(8)).unwrap_or(bytes)),
            len,
        );
        let chunks = [
            bits,
            self.data.tree_hash_root(),
            self.signature.tree_hash_root(),
            self.committee_bits.tree_hash_root(),
        ]
        .concat();
        mix_in_active_fields(merkleize_progressive(&chunks), 4)
    }
}

/// A `uint64` the beacon API writes as a decimal string, as a list item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotedU64(pub u64);

impl<'de> Deserialize<'de> for QuotedU64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_utils::quoted_u64::deserialize(d).map(Self)
    }
}

impl TreeHash for QuotedU64 {
    fn tree_hash_type() -> TreeHashType {
        TreeHashType::Basic
    }
    fn tree_hash_packed_encoding(&self) -> PackedEncoding {
        self.0.tree_hash_packed_encoding()
    }
    fn tree_hash_packing_factor() -> usize {
        u64::tree_hash_packing_factor()
    }
    fn tree_hash_root(&self) -> Hash256 {
        self.0.tree_hash_root()
    }
}

progressive_container!(
    /// `IndexedAttestation` of Gloas: its indices a progressive list.
    IndexedAttestationGloas<P> {
        /// Who attested.
        attesting_indices: ProgressiveList<QuotedU64, P::MaxValidatorsPerSlot>,
        /// What.
        data: AttestationData,
        /// Aggregate signature.
        signature: SignatureBytes,
    }
);

/// `AttesterSlashing` of Gloas.
#[derive(Debug, Clone, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct AttesterSlashingGloas<P: Preset> {
    /// One vote.
    pub attestation_1: IndexedAttestationGloas<P>,
    /// The vote it conflicts with.
    pub attestation_2: IndexedAttestationGloas<P>,
}

progressive_container!(
    /// `PayloadAttestation`: the payload-timeliness committee's aggregate vote.
    PayloadAttestation<P> {
        /// Which members voted.
        aggregation_bits: BitVector<P::PtcSize>,
        /// What.
        data: PayloadAttestationData,
        /// Aggregate signature.
        signature: SignatureBytes,
    }
);

/// `SignedExecutionPayloadBid`: the builder's bid, as a block carries it.
#[derive(Debug, Clone, Deserialize, TreeHash)]
pub struct SignedExecutionPayloadBid {
    /// The bid.
    pub message: ExecutionPayloadBid,
    /// The builder's signature.
    pub signature: SignatureBytes,
}

progressive_container!(
    /// `BeaconBlockBody` of Gloas: no execution payload; the builder's bid
    /// (what the proposer commits the payload's fee recipient and gas limit
    /// to), payload attestations, and the parent's execution requests.
    BodyGloas<P> {
        /// RANDAO reveal.
        randao_reveal: SignatureBytes,
        /// Eth1 vote.
        eth1_data: Eth1Data,
        /// Graffiti.
        graffiti: B256,
        /// Proposer slashings.
        proposer_slashings: ProgressiveList<ProposerSlashing, U16>,
        /// Attester slashings.
        attester_slashings: ProgressiveList<AttesterSlashingGloas<P>, ssz_types::typenum::U1>,
        /// Attestations.
        attestations: ProgressiveList<AttestationGloas<P>, ssz_types::typenum::U8>,
        /// Deposits (none from Gloas on: limit 0).
        deposits: ProgressiveList<Deposit, ssz_types::typenum::U0>,
        /// Voluntary exits.
        voluntary_exits: ProgressiveList<SignedVoluntaryExit, U16>,
        /// Sync aggregate.
        sync_aggregate: SyncAggregate<P>,
        /// Withdrawal credential changes.
        bls_to_execution_changes: ProgressiveList<SignedBlsToExecutionChange, U16>,
        /// The builder's signed bid.
        signed_execution_payload_bid: SignedExecutionPayloadBid,
        /// Payload attestations.
        payload_attestations: ProgressiveList<PayloadAttestation<P>, ssz_types::typenum::U4>,
        /// The parent payload's execution requests.
        parent_execution_requests: ExecutionRequestsGloas,
    }
);

impl<P: Preset> super::blocks::BodyFacts for BodyGloas<P> {
    const BID: bool = true;
    fn graffiti(&self) -> B256 {
        self.graffiti
    }
    /// The payload's fee recipient and gas limit are the bid's: the
    /// builder must build what the proposer's block commits to.
    fn payload(&self) -> Option<(Address, u64)> {
        let bid = &self.signed_execution_payload_bid.message;
        Some((bid.fee_recipient, bid.gas_limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(b: u8) -> [u8; 32] {
        [b; 32]
    }

    /// The shape EIP-7916 defines, written out for five chunks: one leaf,
    /// then four, then nothing.
    #[test]
    fn five_chunks_are_a_leaf_then_a_subtree_of_four() {
        let c: Vec<[u8; 32]> = (1..=5).map(chunk).collect();
        let bytes: Vec<u8> = c.concat();
        let four = hash_pair(
            hash_pair(&c[1], &c[2]).as_slice(),
            hash_pair(&c[3], &c[4]).as_slice(),
        );
        let second = hash_pair(four.as_slice(), &[0; 32]);
        let expected = hash_pair(&c[0], second.as_slice());
        assert_eq!(merkleize_progressive(&bytes), expected);
        assert_eq!(merkleize_progressive(&[]), Hash256::ZERO);
        assert_eq!(
            merkleize_progressive(&c[0]),
            hash_pair(&c[0], &[0; 32]),
            "one chunk: the rest is empty"
        );
    }

    #[test]
    fn active_fields_are_packed_low_bit_first() {
        let root = Hash256::repeat_byte(7);
        let mut bits = [0u8; 32];
        bits[0] = 0xff;
        bits[1] = 0x0f;
        assert_eq!(
            mix_in_active_fields(root, 12),
            hash_pair(root.as_slice(), &bits)
        );
    }
}
