// @x402/fetch pays an x402 v1 or v2 resource with the @x402/svm exact client.
// argv[2]: {"url", "secret", "rpc_url"}. Prints the status, the body and the settlement.
import { decodePaymentResponseHeader, wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { ExactSvmScheme } from "@x402/svm/exact/client";
import { ExactSvmSchemeV1 } from "@x402/svm/v1";
import { args, out, run, signerFrom } from "./common.mjs";

run(async () => {
  const { url, secret, rpc_url: rpcUrl } = args();
  const signer = await signerFrom(secret);
  const client = new x402Client()
    .register("solana:*", new ExactSvmScheme(signer, { rpcUrl }))
    .registerV1("solana-devnet", new ExactSvmSchemeV1(signer, { rpcUrl }));
  const response = await wrapFetchWithPayment(fetch, client)(url);
  const header =
    response.headers.get("PAYMENT-RESPONSE") ?? response.headers.get("X-PAYMENT-RESPONSE");
  out({
    status: response.status,
    body: await response.text(),
    settlement: header ? decodePaymentResponseHeader(header) : null,
  });
});
