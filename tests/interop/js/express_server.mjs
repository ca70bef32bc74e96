// A resource server behind the official @x402/express middleware, settling either through a
// facilitator over HTTP (the gateway's /facilitator) or through the official TypeScript
// facilitator (@x402/svm exact) in this process, which uses the gateway's /rpc.
// argv[2]: {"port", "pay_to", "asset", "amount", "network", and either "facilitator_url" or
// "rpc_url" + "fee_payer_secret"}. Prints {"ready": true} once listening; serves until killed.
import express from "express";
import { HTTPFacilitatorClient } from "@x402/core/server";
import { x402Facilitator } from "@x402/core/facilitator";
import { paymentMiddleware, x402ResourceServer } from "@x402/express";
import { toFacilitatorSvmSigner } from "@x402/svm";
import { registerExactSvmScheme as registerFacilitator } from "@x402/svm/exact/facilitator";
import { ExactSvmScheme } from "@x402/svm/exact/server";
import { args, out, signerFrom } from "./common.mjs";

const options = args();

async function facilitatorClient() {
  if (options.facilitator_url) {
    return new HTTPFacilitatorClient({ url: options.facilitator_url });
  }
  const signer = toFacilitatorSvmSigner(await signerFrom(options.fee_payer_secret), {
    defaultRpcUrl: options.rpc_url,
  });
  const facilitator = registerFacilitator(new x402Facilitator(), {
    signer,
    networks: [options.network],
  });
  return {
    verify: (payload, requirements) => facilitator.verify(payload, requirements),
    settle: (payload, requirements) => facilitator.settle(payload, requirements),
    getSupported: async () => facilitator.getSupported(),
  };
}

const server = new x402ResourceServer(await facilitatorClient()).register(
  options.network,
  new ExactSvmScheme(),
);
const app = express();
app.use(
  paymentMiddleware(
    {
      "GET /paid": {
        accepts: {
          scheme: "exact",
          payTo: options.pay_to,
          price: { amount: options.amount, asset: options.asset, extra: {} },
          network: options.network,
        },
        description: "interop",
        mimeType: "application/json",
      },
    },
    server,
  ),
);
app.get("/paid", (request, response) => {
  response.json({ content: "served by @x402/express" });
});
const listener = app.listen(options.port, "127.0.0.1", () => out({ ready: true }));
process.on("SIGTERM", () => listener.close(() => process.exit(0)));
