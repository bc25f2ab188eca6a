//! SSZ containers of the messages a validator signs, in spec field order
//! (which is what `hash_tree_root` depends on). They double as the JSON
//! shapes of Web3Signer requests: integers are decimal strings, byte strings
//! `0x` hex of either case; the deprecated `BLOCK` request's camelCase names
//! are accepted as aliases.

use alloy_primitives::{Address, B256, FixedBytes};
use serde::Deserialize;
use ssz_types::typenum::{U2, U33, U128};
use ssz_types::{BitList, BitVector, FixedVector, VariableList};
use tree_hash_derive::TreeHash;

use super::preset::Preset;

/// A 4-byte fork version.
pub type Version = FixedBytes<4>;
/// A compressed BLS public key.
pub type PublicKeyBytes = FixedBytes<48>;
/// A compressed BLS signature.
pub type SignatureBytes = FixedBytes<96>;

/// `ForkData`: what a domain commits to.
#[derive(Debug, Clone, TreeHash)]
pub struct ForkData {
    /// Fork version.
    pub current_version: Version,
    /// Network.
    pub genesis_validators_root: B256,
}

/// `SigningData`: what is finally signed.
#[derive(Debug, Clone, TreeHash)]
pub struct SigningData {
    /// `hash_tree_root` of the message.
    pub object_root: B256,
    /// The domain.
    pub domain: B256,
}

/// `Fork` as Web3Signer sends it in `fork_info`.
#[derive(Debug, Clone, Deserialize)]
pub struct Fork {
    /// Version before `epoch`.
    #[serde(alias = "previousVersion")]
    pub previous_version: Version,
    /// Version from `epoch`.
    #[serde(alias = "currentVersion")]
    pub current_version: Version,
    /// Activation epoch (some clients send the signing epoch: equivalent here).
    #[serde(with = "serde_utils::quoted_u64")]
    pub epoch: u64,
}

/// `fork_info` of a Web3Signer request.
#[derive(Debug, Clone, Deserialize)]
pub struct ForkInfo {
    /// The fork schedule entry.
    pub fork: Fork,
    /// The network.
    #[serde(alias = "genesisValidatorsRoot")]
    pub genesis_validators_root: B256,
}

/// `Checkpoint`.
#[derive(Debug, Clone, Deserialize, TreeHash)]
pub struct Checkpoint {
    /// Epoch.
    #[serde(with = "serde_utils::quoted_u64")]
    pub epoch: u64,
    /// Block root.
    pub root: B256,
}

/// `AttestationData`.
#[derive(Debug, Clone, Deserialize, TreeHash)]
pub struct AttestationData {
    /// Slot.
    #[serde(with = "serde_utils::quoted_u64")]
    pub slot: u64,
    /// Committee index.
    #[serde(with = "serde_utils::quoted_u64")]
    pub index: u64,
    /// Head vote.
    #[serde(alias = "beaconBlockRoot")]
    pub beacon_block_root: B256,
    /// Source checkpoint.
    pub source: Checkpoint,
    /// Target checkpoint.
    pub target: Checkpoint,
}

/// `BeaconBlockHeader`.
#[derive(Debug, Clone, Deserialize, TreeHash)]
pub struct BeaconBlockHeader {
    /// Slot.
    #[serde(with = "serde_utils::quoted_u64")]
    pub slot: u64,
    /// Proposer.
    #[serde(with = "serde_utils::quoted_u64", alias = "proposerIndex")]
    pub proposer_index: u64,
    /// Parent block root.
    #[serde(alias = "parentRoot")]
    pub parent_root: B256,
    /// State root.
    #[serde(alias = "stateRoot")]
    pub state_root: B256,
    /// Body root.
    #[serde(alias = "bodyRoot")]
    pub body_root: B256,
}

/// `VoluntaryExit`.
#[derive(Debug, Clone, Deserialize, TreeHash)]
pub struct VoluntaryExit {
    /// Earliest exit epoch.
    #[serde(with = "serde_utils::quoted_u64")]
    pub epoch: u64,
    /// Validator.
    #[serde(with = "serde_utils::quoted_u64", alias = "validatorIndex")]
    pub validator_index: u64,
}

/// `SyncAggregatorSelectionData`.
#[derive(Debug, Clone, Deserialize, TreeHash)]
pub struct SyncAggregatorSelectionData {
    /// Slot.
    #[serde(with = "serde_utils::quoted_u64")]
    pub slot: u64,
    /// Subcommittee.
    #[serde(with = "serde_utils::quoted_u64")]
    pub subcommittee_index: u64,
}

/// `DepositMessage` (what a deposit signature covers).
#[derive(Debug, Clone, Deserialize, TreeHash)]
pub struct DepositMessage {
    /// Validator key.
    pub pubkey: PublicKeyBytes,
    /// Withdrawal credentials.
    pub withdrawal_credentials: B256,
    /// Amount in Gwei.
    #[serde(with = "serde_utils::quoted_u64")]
    pub amount: u64,
}

/// `ValidatorRegistrationV1` (builder API).
#[derive(Debug, Clone, Deserialize, TreeHash)]
pub struct ValidatorRegistration {
    /// Execution address for fees.
    pub fee_recipient: Address,
    /// Preferred gas limit.
    #[serde(with = "serde_utils::quoted_u64")]
    pub gas_limit: u64,
    /// Unix time of the registration.
    #[serde(with = "serde_utils::quoted_u64")]
    pub timestamp: u64,
    /// Validator key.
    pub pubkey: PublicKeyBytes,
}

/// `Attestation` (phase0 to deneb).
#[derive(Debug, Clone, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct Attestation<P: Preset> {
    /// Who attested.
    #[serde(alias = "aggregationBits")]
    pub aggregation_bits: BitList<P::MaxValidatorsPerCommittee>,
    /// What.
    pub data: AttestationData,
    /// Aggregate signature.
    pub signature: SignatureBytes,
}

/// `Attestation` from Electra (EIP-7549: committee bits, per-slot aggregation bits).
#[derive(Debug, Clone, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct AttestationElectra<P: Preset> {
    /// Who attested, over all committees of the slot.
    pub aggregation_bits: BitList<P::MaxValidatorsPerSlot>,
    /// What.
    pub data: AttestationData,
    /// Aggregate signature.
    pub signature: SignatureBytes,
    /// Which committees.
    pub committee_bits: BitVector<P::MaxCommitteesPerSlot>,
}

/// `AggregateAndProof` over either attestation form.
#[derive(Debug, Clone, Deserialize, TreeHash)]
pub struct AggregateAndProof<A: tree_hash::TreeHash> {
    /// Aggregator.
    #[serde(with = "serde_utils::quoted_u64")]
    pub aggregator_index: u64,
    /// The aggregate.
    pub aggregate: A,
    /// Selection proof.
    pub selection_proof: SignatureBytes,
}

/// `SyncCommitteeContribution`.
#[derive(Debug, Clone, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct SyncCommitteeContribution<P: Preset> {
    /// Slot.
    #[serde(with = "serde_utils::quoted_u64")]
    pub slot: u64,
    /// Head.
    pub beacon_block_root: B256,
    /// Subcommittee.
    #[serde(with = "serde_utils::quoted_u64")]
    pub subcommittee_index: u64,
    /// Who contributed.
    pub aggregation_bits: BitVector<P::SyncSubcommitteeSize>,
    /// Aggregate signature.
    pub signature: SignatureBytes,
}

/// `ContributionAndProof`.
#[derive(Debug, Clone, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct ContributionAndProof<P: Preset> {
    /// Aggregator.
    #[serde(with = "serde_utils::quoted_u64")]
    pub aggregator_index: u64,
    /// The contribution.
    pub contribution: SyncCommitteeContribution<P>,
    /// Selection proof.
    pub selection_proof: SignatureBytes,
}

// --- Full blocks (phase0, altair): the body is hashed as sent. -------------

/// `Eth1Data`.
#[derive(Debug, Clone, Deserialize, TreeHash)]
pub struct Eth1Data {
    /// Deposit tree root.
    #[serde(alias = "depositRoot")]
    pub deposit_root: B256,
    /// Deposit count.
    #[serde(with = "serde_utils::quoted_u64", alias = "depositCount")]
    pub deposit_count: u64,
    /// Eth1 block hash.
    #[serde(alias = "blockHash")]
    pub block_hash: B256,
}

/// `SignedBeaconBlockHeader`.
#[derive(Debug, Clone, Deserialize, TreeHash)]
pub struct SignedBeaconBlockHeader {
    /// Header.
    pub message: BeaconBlockHeader,
    /// Signature.
    pub signature: SignatureBytes,
}

/// `ProposerSlashing`.
#[derive(Debug, Clone, Deserialize, TreeHash)]
pub struct ProposerSlashing {
    /// First header.
    #[serde(alias = "signedHeader1")]
    pub signed_header_1: SignedBeaconBlockHeader,
    /// Second header.
    #[serde(alias = "signedHeader2")]
    pub signed_header_2: SignedBeaconBlockHeader,
}

/// `IndexedAttestation` (phase0 form).
#[derive(Debug, Clone, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct IndexedAttestation<P: Preset> {
    /// Attesters.
    #[serde(
        with = "ssz_types::serde_utils::quoted_u64_var_list",
        alias = "attestingIndices"
    )]
    pub attesting_indices: VariableList<u64, P::MaxValidatorsPerCommittee>,
    /// What.
    pub data: AttestationData,
    /// Signature.
    pub signature: SignatureBytes,
}

/// `AttesterSlashing` (phase0 form).
#[derive(Debug, Clone, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct AttesterSlashing<P: Preset> {
    /// First.
    pub attestation_1: IndexedAttestation<P>,
    /// Second.
    pub attestation_2: IndexedAttestation<P>,
}

/// `DepositData`.
#[derive(Debug, Clone, Deserialize, TreeHash)]
pub struct DepositData {
    /// Key.
    pub pubkey: PublicKeyBytes,
    /// Withdrawal credentials.
    #[serde(alias = "withdrawalCredentials")]
    pub withdrawal_credentials: B256,
    /// Amount.
    #[serde(with = "serde_utils::quoted_u64")]
    pub amount: u64,
    /// Signature.
    pub signature: SignatureBytes,
}

/// `Deposit`.
#[derive(Debug, Clone, Deserialize, TreeHash)]
pub struct Deposit {
    /// Merkle proof (depth 32 + length mix-in).
    pub proof: FixedVector<B256, U33>,
    /// The deposit.
    pub data: DepositData,
}

/// `SignedVoluntaryExit`.
#[derive(Debug, Clone, Deserialize, TreeHash)]
pub struct SignedVoluntaryExit {
    /// Exit.
    pub message: VoluntaryExit,
    /// Signature.
    pub signature: SignatureBytes,
}

/// `SyncAggregate` (altair).
#[derive(Debug, Clone, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct SyncAggregate<P: Preset> {
    /// Participants.
    pub sync_committee_bits: BitVector<P::SyncCommitteeSize>,
    /// Aggregate signature.
    pub sync_committee_signature: SignatureBytes,
}

/// `BeaconBlockBody` of phase0.
#[derive(Debug, Clone, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct BeaconBlockBodyPhase0<P: Preset> {
    /// RANDAO reveal.
    #[serde(alias = "randaoReveal")]
    pub randao_reveal: SignatureBytes,
    /// Eth1 vote.
    #[serde(alias = "eth1Data")]
    pub eth1_data: Eth1Data,
    /// Graffiti.
    pub graffiti: B256,
    /// Proposer slashings.
    #[serde(alias = "proposerSlashings")]
    pub proposer_slashings: VariableList<ProposerSlashing, P::Max16>,
    /// Attester slashings.
    #[serde(alias = "attesterSlashings")]
    pub attester_slashings: VariableList<AttesterSlashing<P>, U2>,
    /// Attestations.
    pub attestations: VariableList<Attestation<P>, U128>,
    /// Deposits.
    pub deposits: VariableList<Deposit, P::Max16>,
    /// Exits.
    #[serde(alias = "voluntaryExits")]
    pub voluntary_exits: VariableList<SignedVoluntaryExit, P::Max16>,
}

/// `BeaconBlockBody` of altair.
#[derive(Debug, Clone, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct BeaconBlockBodyAltair<P: Preset> {
    /// RANDAO reveal.
    pub randao_reveal: SignatureBytes,
    /// Eth1 vote.
    pub eth1_data: Eth1Data,
    /// Graffiti.
    pub graffiti: B256,
    /// Proposer slashings.
    pub proposer_slashings: VariableList<ProposerSlashing, P::Max16>,
    /// Attester slashings.
    pub attester_slashings: VariableList<AttesterSlashing<P>, U2>,
    /// Attestations.
    pub attestations: VariableList<Attestation<P>, U128>,
    /// Deposits.
    pub deposits: VariableList<Deposit, P::Max16>,
    /// Exits.
    pub voluntary_exits: VariableList<SignedVoluntaryExit, P::Max16>,
    /// Sync committee participation.
    pub sync_aggregate: SyncAggregate<P>,
}

/// `BeaconBlock` with a full body.
#[derive(Debug, Clone, Deserialize, TreeHash)]
pub struct BeaconBlock<B: tree_hash::TreeHash> {
    /// Slot.
    #[serde(with = "serde_utils::quoted_u64")]
    pub slot: u64,
    /// Proposer.
    #[serde(with = "serde_utils::quoted_u64", alias = "proposerIndex")]
    pub proposer_index: u64,
    /// Parent.
    #[serde(alias = "parentRoot")]
    pub parent_root: B256,
    /// State root.
    #[serde(alias = "stateRoot")]
    pub state_root: B256,
    /// Body.
    pub body: B,
}
