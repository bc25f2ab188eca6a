//! gRPC signing and gRPC health on one listener.

/// A two-service router: `grpc.health.v1.Health` and `signer.v1.Signer`
/// (tonic's own router needs axum; this is all we route).
#[derive(Debug, Clone)]
pub(super) struct Routes<A, B> {
    pub(super) health: A,
    pub(super) signer: B,
}

impl<A, B> tonic::codegen::Service<tonic::codegen::http::Request<tonic::body::Body>>
    for Routes<A, B>
where
    A: tonic::codegen::Service<
            tonic::codegen::http::Request<tonic::body::Body>,
            Response = tonic::codegen::http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    A::Future: Send + 'static,
    B: tonic::codegen::Service<
            tonic::codegen::http::Request<tonic::body::Body>,
            Response = tonic::codegen::http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    B::Future: Send + 'static,
{
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: tonic::codegen::http::Request<tonic::body::Body>) -> Self::Future {
        if req.uri().path().starts_with("/grpc.health.v1.Health/") {
            let mut h = self.health.clone();
            Box::pin(async move { h.call(req).await })
        } else {
            let mut s = self.signer.clone();
            Box::pin(async move { s.call(req).await })
        }
    }
}

impl<A, B> tonic::server::NamedService for Routes<A, B> {
    const NAME: &'static str = "signer";
}
