//! Full and blinded beacon blocks from Bellatrix on, in spec field order, so
//! the signer can compute a block's root itself *and* read what it commits
//! to: the execution payload's fee recipient and gas limit, and the
//! graffiti (what a block-content policy checks, `policy::content`).
//!
//! Web3Signer's API sends only a block header from Bellatrix on; a header
//! commits to the body by its root and shows nothing of it. These types
//! serve this signer's extension: `beacon_block.block` (full) or
//! `beacon_block.blinded_block` beside or instead of `block_header`.
//!
//! Limits shared by the mainnet and minimal presets are written here; the
//! one that differs (`MAX_WITHDRAWALS_PER_PAYLOAD`) comes from the preset.
//! Roots are checked against Lodestar's SSZ types (`tests/tests/block_content.rs`).

use alloy_primitives::{Address, B256, U256};
use serde::Deserialize;
use ssz_types::typenum::{
    U1, U2, U8, U16, U32, U128, U256 as LogsBloomBytes, U4096, U8192, U1048576, U1073741824,
};
use ssz_types::{FixedVector, VariableList};
use tree_hash_derive::TreeHash;

use super::containers::{
    Attestation, AttestationData, AttestationElectra, AttesterSlashing, Deposit, Eth1Data,
    ProposerSlashing, PublicKeyBytes, SignatureBytes, SignedVoluntaryExit, SyncAggregate,
};
use super::preset::Preset;

/// `Transaction`: an opaque RLP byte string of at most 2^30 bytes.
pub type Transaction = VariableList<u8, U1073741824>;
/// `KZGCommitment`.
pub type KzgCommitment = alloy_primitives::FixedBytes<48>;

/// What a block-content policy reads from an execution payload (full or header).
pub trait PayloadFacts {
    /// `fee_recipient`.
    fn fee_recipient(&self) -> Address;
    /// `gas_limit`.
    fn gas_limit(&self) -> u64;
}

/// What a block-content policy reads from a block body of any fork.
pub trait BodyFacts {
    /// True when [`BodyFacts::payload`] is read from a builder's bid (Gloas).
    const BID: bool = false;
    /// `graffiti`.
    fn graffiti(&self) -> B256;
    /// The execution payload's facts (none before Bellatrix).
    fn payload(&self) -> Option<(Address, u64)>;
}

macro_rules! payload_facts {
    ($($t:ident $(<$p:ident>)?),*) => {$(
        impl$(<$p: Preset>)? PayloadFacts for $t$(<$p>)? {
            fn fee_recipient(&self) -> Address {
                self.fee_recipient
            }
            fn gas_limit(&self) -> u64 {
                self.gas_limit
            }
        }
    )*};
}

/// An execution payload or payload header: the fields every fork's has
/// (Bellatrix's, in order), then the fork's own, in order.
macro_rules! execution_payload {
    ($(#[$m:meta])* $name:ident $(<$p:ident>)? { $($(#[$fm:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Deserialize, TreeHash)]
        #[serde(bound = "")]
        pub struct $name $(<$p: Preset>)? {
            /// Parent block hash.
            pub parent_hash: B256,
            /// Who receives the priority fees.
            pub fee_recipient: Address,
            /// State root.
            pub state_root: B256,
            /// Receipts root.
            pub receipts_root: B256,
            /// Logs bloom.
            #[serde(with = "ssz_types::serde_utils::hex_fixed_vec")]
            pub logs_bloom: FixedVector<u8, LogsBloomBytes>,
            /// RANDAO mix.
            pub prev_randao: B256,
            /// Block number.
            #[serde(with = "serde_utils::quoted_u64")]
            pub block_number: u64,
            /// Gas limit.
            #[serde(with = "serde_utils::quoted_u64")]
            pub gas_limit: u64,
            /// Gas used.
            #[serde(with = "serde_utils::quoted_u64")]
            pub gas_used: u64,
            /// Timestamp.
            #[serde(with = "serde_utils::quoted_u64")]
            pub timestamp: u64,
            /// Extra data.
            #[serde(with = "ssz_types::serde_utils::hex_var_list")]
            pub extra_data: VariableList<u8, U32>,
            /// Base fee.
            #[serde(with = "serde_utils::u256_dec")]
            pub base_fee_per_gas: U256,
            /// Block hash.
            pub block_hash: B256,
            $($(#[$fm])* pub $field: $ty,)*
        }
    };
}

/// `Withdrawal` (Capella).
#[derive(Debug, Clone, Deserialize, TreeHash)]
pub struct Withdrawal {
    /// Index.
    #[serde(with = "serde_utils::quoted_u64")]
    pub index: u64,
    /// Validator.
    #[serde(with = "serde_utils::quoted_u64")]
    pub validator_index: u64,
    /// To.
    pub address: Address,
    /// Gwei.
    #[serde(with = "serde_utils::quoted_u64")]
    pub amount: u64,
}

execution_payload!(
    /// `ExecutionPayload` of Bellatrix.
    PayloadBellatrix {
        /// Transactions.
        #[serde(with = "ssz_types::serde_utils::list_of_hex_var_list")]
        transactions: VariableList<Transaction, U1048576>,
    }
);

execution_payload!(
    /// `ExecutionPayload` of Capella.
    PayloadCapella<P> {
        /// Transactions.
        #[serde(with = "ssz_types::serde_utils::list_of_hex_var_list")]
        transactions: VariableList<Transaction, U1048576>,
        /// Withdrawals.
        withdrawals: VariableList<Withdrawal, P::MaxWithdrawalsPerPayload>,
    }
);

execution_payload!(
    /// `ExecutionPayload` of Deneb (also Electra and Fulu).
    PayloadDeneb<P> {
        /// Transactions.
        #[serde(with = "ssz_types::serde_utils::list_of_hex_var_list")]
        transactions: VariableList<Transaction, U1048576>,
        /// Withdrawals.
        withdrawals: VariableList<Withdrawal, P::MaxWithdrawalsPerPayload>,
        /// Blob gas used.
        #[serde(with = "serde_utils::quoted_u64")]
        blob_gas_used: u64,
        /// Excess blob gas.
        #[serde(with = "serde_utils::quoted_u64")]
        excess_blob_gas: u64,
    }
);

execution_payload!(
    /// `ExecutionPayloadHeader` of Bellatrix (blinded blocks).
    HeaderBellatrix {
        /// Root of the transactions.
        transactions_root: B256,
    }
);

execution_payload!(
    /// `ExecutionPayloadHeader` of Capella.
    HeaderCapella {
        /// Root of the transactions.
        transactions_root: B256,
        /// Root of the withdrawals.
        withdrawals_root: B256,
    }
);

execution_payload!(
    /// `ExecutionPayloadHeader` of Deneb (also Electra and Fulu).
    HeaderDeneb {
        /// Root of the transactions.
        transactions_root: B256,
        /// Root of the withdrawals.
        withdrawals_root: B256,
        /// Blob gas used.
        #[serde(with = "serde_utils::quoted_u64")]
        blob_gas_used: u64,
        /// Excess blob gas.
        #[serde(with = "serde_utils::quoted_u64")]
        excess_blob_gas: u64,
    }
);

payload_facts!(
    PayloadBellatrix,
    PayloadCapella<P>,
    PayloadDeneb<P>,
    HeaderBellatrix,
    HeaderCapella,
    HeaderDeneb
);

/// `BLSToExecutionChange` (Capella).
#[derive(Debug, Clone, Deserialize, TreeHash)]
pub struct BlsToExecutionChange {
    /// Validator.
    #[serde(with = "serde_utils::quoted_u64")]
    pub validator_index: u64,
    /// The BLS withdrawal key.
    pub from_bls_pubkey: PublicKeyBytes,
    /// The new withdrawal address.
    pub to_execution_address: Address,
}

/// `SignedBLSToExecutionChange`.
#[derive(Debug, Clone, Deserialize, TreeHash)]
pub struct SignedBlsToExecutionChange {
    /// Change.
    pub message: BlsToExecutionChange,
    /// Signature.
    pub signature: SignatureBytes,
}

/// `IndexedAttestation` from Electra (attesters of every committee of a slot).
#[derive(Debug, Clone, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct IndexedAttestationElectra<P: Preset> {
    /// Attesters.
    #[serde(with = "ssz_types::serde_utils::quoted_u64_var_list")]
    pub attesting_indices: VariableList<u64, P::MaxValidatorsPerSlot>,
    /// What.
    pub data: AttestationData,
    /// Signature.
    pub signature: SignatureBytes,
}

/// `AttesterSlashing` from Electra.
#[derive(Debug, Clone, Deserialize, TreeHash)]
#[serde(bound = "")]
pub struct AttesterSlashingElectra<P: Preset> {
    /// First.
    pub attestation_1: IndexedAttestationElectra<P>,
    /// Second.
    pub attestation_2: IndexedAttestationElectra<P>,
}

/// `DepositRequest` (EIP-6110).
#[derive(Debug, Clone, Deserialize, TreeHash)]
pub struct DepositRequest {
    /// Key.
    pub pubkey: PublicKeyBytes,
    /// Withdrawal credentials.
    pub withdrawal_credentials: B256,
    /// Gwei.
    #[serde(with = "serde_utils::quoted_u64")]
    pub amount: u64,
    /// Signature.
    pub signature: SignatureBytes,
    /// Index.
    #[serde(with = "serde_utils::quoted_u64")]
    pub index: u64,
}

/// `WithdrawalRequest` (EIP-7002).
#[derive(Debug, Clone, Deserialize, TreeHash)]
pub struct WithdrawalRequest {
    /// Who asks.
    pub source_address: Address,
    /// Validator.
    pub validator_pubkey: PublicKeyBytes,
    /// Gwei.
    #[serde(with = "serde_utils::quoted_u64")]
    pub amount: u64,
}

/// `ConsolidationRequest` (EIP-7251).
#[derive(Debug, Clone, Deserialize, TreeHash)]
pub struct ConsolidationRequest {
    /// Who asks.
    pub source_address: Address,
    /// From.
    pub source_pubkey: PublicKeyBytes,
    /// To.
    pub target_pubkey: PublicKeyBytes,
}

/// `ExecutionRequests` (Electra).
#[derive(Debug, Clone, Deserialize, TreeHash)]
pub struct ExecutionRequests {
    /// Deposits.
    pub deposits: VariableList<DepositRequest, U8192>,
    /// Withdrawals.
    pub withdrawals: VariableList<WithdrawalRequest, U16>,
    /// Consolidations.
    pub consolidations: VariableList<ConsolidationRequest, U2>,
}

/// A block body from Bellatrix on, over payload `E` (full or header): the
/// fields every such fork has, in order — with the fork's kinds of attester
/// slashing and attestation — then the fork's own. The payload's field is
/// named `execution_payload` in a block and `execution_payload_header` in a
/// blinded block; the root does not depend on names.
macro_rules! block_body {
    (
        $(#[$m:meta])* $name:ident,
        $slashings:ty, $attestations:ty
        { $($(#[$fm:meta])* $field:ident: $ty:ty,)* }
    ) => {
        $(#[$m])*
        #[derive(Debug, Clone, Deserialize, TreeHash)]
        #[serde(bound = "E: serde::de::DeserializeOwned")]
        pub struct $name<P: Preset, E: tree_hash::TreeHash> {
            /// RANDAO reveal.
            pub randao_reveal: SignatureBytes,
            /// Eth1 vote.
            pub eth1_data: Eth1Data,
            /// Graffiti.
            pub graffiti: B256,
            /// Proposer slashings.
            pub proposer_slashings: VariableList<ProposerSlashing, P::Max16>,
            /// Attester slashings.
            pub attester_slashings: $slashings,
            /// Attestations.
            pub attestations: $attestations,
            /// Deposits.
            pub deposits: VariableList<Deposit, P::Max16>,
            /// Exits.
            pub voluntary_exits: VariableList<SignedVoluntaryExit, P::Max16>,
            /// Sync committee participation.
            pub sync_aggregate: SyncAggregate<P>,
            /// The payload (or its header).
            #[serde(alias = "execution_payload_header")]
            pub execution_payload: E,
            $($(#[$fm])* pub $field: $ty,)*
        }
    };
}

block_body!(
    /// `BeaconBlockBody` of Bellatrix.
    BodyBellatrix,
    VariableList<AttesterSlashing<P>, U2>,
    VariableList<Attestation<P>, U128>
    {}
);

block_body!(
    /// `BeaconBlockBody` of Capella.
    BodyCapella,
    VariableList<AttesterSlashing<P>, U2>,
    VariableList<Attestation<P>, U128>
    {
        /// Withdrawal credential changes.
        bls_to_execution_changes: VariableList<SignedBlsToExecutionChange, U16>,
    }
);

block_body!(
    /// `BeaconBlockBody` of Deneb.
    BodyDeneb,
    VariableList<AttesterSlashing<P>, U2>,
    VariableList<Attestation<P>, U128>
    {
        /// Withdrawal credential changes.
        bls_to_execution_changes: VariableList<SignedBlsToExecutionChange, U16>,
        /// Blob commitments.
        blob_kzg_commitments: VariableList<KzgCommitment, U4096>,
    }
);

block_body!(
    /// `BeaconBlockBody` of Electra (and Fulu, which changes no block
    /// field): at most one attester slashing and eight attestations, over
    /// every committee of a slot.
    BodyElectra,
    VariableList<AttesterSlashingElectra<P>, U1>,
    VariableList<AttestationElectra<P>, U8>
    {
        /// Withdrawal credential changes.
        bls_to_execution_changes: VariableList<SignedBlsToExecutionChange, U16>,
        /// Blob commitments.
        blob_kzg_commitments: VariableList<KzgCommitment, U4096>,
        /// Execution-layer requests.
        execution_requests: ExecutionRequests,
    }
);

macro_rules! body_facts {
    ($($t:ident),*) => {$(
        impl<P: Preset, E: tree_hash::TreeHash + PayloadFacts> BodyFacts for $t<P, E> {
            fn graffiti(&self) -> B256 {
                self.graffiti
            }
            fn payload(&self) -> Option<(Address, u64)> {
                Some((self.execution_payload.fee_recipient(), self.execution_payload.gas_limit()))
            }
        }
    )*};
}

body_facts!(BodyBellatrix, BodyCapella, BodyDeneb, BodyElectra);

impl<P: Preset> BodyFacts for super::containers::BeaconBlockBodyPhase0<P> {
    fn graffiti(&self) -> B256 {
        self.graffiti
    }
    fn payload(&self) -> Option<(Address, u64)> {
        None
    }
}

impl<P: Preset> BodyFacts for super::containers::BeaconBlockBodyAltair<P> {
    fn graffiti(&self) -> B256 {
        self.graffiti
    }
    fn payload(&self) -> Option<(Address, u64)> {
        None
    }
}
