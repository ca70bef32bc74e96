// @solana/kit sends and confirms a SOL transfer through the gateway's /rpc.
// argv[2]: {"rpc_url", "secret", "to", "lamports"}. Prints the signature, the fee the node
// quoted (getFeeForMessage), the units estimated by simulation and what getTransaction says.
import {
  address,
  appendTransactionMessageInstruction,
  compileTransactionMessage,
  createSolanaRpc,
  createTransactionMessage,
  getBase64Decoder,
  getCompiledTransactionMessageEncoder,
  getSignatureFromTransaction,
  lamports,
  pipe,
  prependTransactionMessageInstruction,
  sendTransactionWithoutConfirmingFactory,
  setTransactionMessageFeePayerSigner,
  setTransactionMessageLifetimeUsingBlockhash,
  signTransactionMessageWithSigners,
} from "@solana/kit";
import {
  estimateComputeUnitLimitFactory,
  getSetComputeUnitLimitInstruction,
} from "@solana-program/compute-budget";
import { getTransferSolInstruction } from "@solana-program/system";
import { args, out, run, signerFrom } from "./common.mjs";

run(async () => {
  const { rpc_url: rpcUrl, secret, to, lamports: amount } = args();
  const rpc = createSolanaRpc(rpcUrl);
  const signer = await signerFrom(secret);
  const { value: blockhash } = await rpc.getLatestBlockhash({ commitment: "confirmed" }).send();
  const draft = pipe(
    createTransactionMessage({ version: 0 }),
    (m) => setTransactionMessageFeePayerSigner(signer, m),
    (m) => setTransactionMessageLifetimeUsingBlockhash(blockhash, m),
    (m) =>
      appendTransactionMessageInstruction(
        getTransferSolInstruction({
          source: signer,
          destination: address(to),
          amount: lamports(BigInt(amount)),
        }),
        m,
      ),
  );
  // Simulates the unsigned message with sigVerify false and replaceRecentBlockhash true.
  const units = await estimateComputeUnitLimitFactory({ rpc })(draft);
  const message = prependTransactionMessageInstruction(
    getSetComputeUnitLimitInstruction({ units }),
    draft,
  );
  const wire = getBase64Decoder().decode(
    getCompiledTransactionMessageEncoder().encode(compileTransactionMessage(message)),
  );
  const { value: quotedFee } = await rpc.getFeeForMessage(wire, { commitment: "confirmed" }).send();
  const signed = await signTransactionMessageWithSigners(message);
  const signature = getSignatureFromTransaction(signed);
  await sendTransactionWithoutConfirmingFactory({ rpc })(signed, { commitment: "confirmed" });
  let status = null;
  for (let attempt = 0; attempt < 100 && !status?.confirmationStatus; attempt += 1) {
    ({ value: [status] } = await rpc.getSignatureStatuses([signature]).send());
    if (!status) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const transaction = await rpc
    .getTransaction(signature, { commitment: "confirmed", maxSupportedTransactionVersion: 0 })
    .send();
  out({
    signature,
    units,
    quotedFee,
    confirmationStatus: status?.confirmationStatus ?? null,
    err: status?.err ?? null,
    fee: transaction?.meta?.fee ?? null,
    preBalances: transaction?.meta?.preBalances ?? null,
    postBalances: transaction?.meta?.postBalances ?? null,
  });
});
