// Shared by the interop scripts: arguments in, one JSON line out, keys from base58 secrets.
import { createKeyPairSignerFromBytes, getBase58Encoder } from "@solana/kit";

/** The JSON document given as the first command-line argument. */
export function args() {
  return JSON.parse(process.argv[2] ?? "{}");
}

/** Print `value` as the last line of standard output (bigints as decimal strings). */
export function out(value) {
  process.stdout.write(
    `${JSON.stringify(value, (_, v) => (typeof v === "bigint" ? v.toString() : v))}\n`,
  );
}

/** A kit signer for a 64-byte secret key written in base58 (solders' `str(Keypair)`). */
export async function signerFrom(secret) {
  return createKeyPairSignerFromBytes(getBase58Encoder().encode(secret));
}

/** Run `main`, printing any failure as a JSON line and exiting non-zero. */
export function run(main) {
  main().catch((error) => {
    out({ error: String(error?.stack ?? error), context: error?.context ?? null });
    process.exit(1);
  });
}
