//! The signer's gRPC API, `signer.v1` (see `proto/signer/v1/signer.proto`).
//!
//! Generated at build time by protox and tonic-prost-build; no system
//! `protoc` is needed.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// `signer.v1`.
pub mod v1 {
    tonic::include_proto!("signer.v1");
}

pub mod codec {
    //! The gRPC codec of `signer.v1`: tonic-prost's, except that a request
    //! that is not valid protobuf is `INVALID_ARGUMENT`.
    //!
    //! tonic-prost answers `INTERNAL`, following the table in gRPC's
    //! `statuscodes.md`. For a signer that is the wrong signal: clients and
    //! dashboards read `INTERNAL` as the signer's fault (fail over, page
    //! someone), when the bytes came from the caller and retrying them
    //! elsewhere cannot help.

    use std::marker::PhantomData;

    use tonic::Status;
    use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
    use tonic_prost::ProstEncoder;

    /// [`tonic_prost::ProstCodec`] with [`StrictDecoder`].
    #[derive(Debug, Clone)]
    pub struct StrictCodec<T, U>(PhantomData<(T, U)>);

    impl<T, U> Default for StrictCodec<T, U> {
        fn default() -> Self {
            Self(PhantomData)
        }
    }

    impl<T, U> Codec for StrictCodec<T, U>
    where
        T: prost::Message + Send + 'static,
        U: prost::Message + Default + Send + 'static,
    {
        type Encode = T;
        type Decode = U;
        type Encoder = ProstEncoder<T>;
        type Decoder = StrictDecoder<U>;

        fn encoder(&mut self) -> Self::Encoder {
            ProstEncoder::default()
        }

        fn decoder(&mut self) -> Self::Decoder {
            StrictDecoder(PhantomData)
        }
    }

    /// Decodes `U`; bytes that are not one are `INVALID_ARGUMENT`.
    #[derive(Debug, Clone)]
    pub struct StrictDecoder<U>(PhantomData<U>);

    impl<U: prost::Message + Default> Decoder for StrictDecoder<U> {
        type Item = U;
        type Error = Status;

        fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
            U::decode(buf)
                .map(Some)
                .map_err(|e| Status::invalid_argument(format!("malformed protobuf message: {e}")))
        }

        fn buffer_settings(&self) -> BufferSettings {
            BufferSettings::default()
        }
    }
}
