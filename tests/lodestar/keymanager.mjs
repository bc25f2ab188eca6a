// The Keymanager API through Lodestar's own client (@lodestar/api/keymanager,
// from npm): an independent implementation of the API's requests and answers.
// Used by tests/tests/keymanager.rs; prints one JSON line per step.
//
// Environment: KM_URL, KM_CA, KM_CERT, KM_KEY (mutual TLS), KM_TOKEN,
// KM_KEYSTORE (file), KM_PASSWORD, KM_PUBKEY, KM_HISTORY (EIP-3076 JSON).
import fs from "node:fs";
import { getClient } from "@lodestar/api/keymanager";
import { createChainForkConfig, defaultChainConfig } from "@lodestar/config";
import { Agent, fetch as undiciFetch } from "undici";

const env = (k) => {
  const v = process.env[k];
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};
const agent = new Agent({
  connect: {
    ca: fs.readFileSync(env("KM_CA")),
    cert: fs.readFileSync(env("KM_CERT")),
    key: fs.readFileSync(env("KM_KEY")),
    servername: "localhost",
  },
});
const fetch = (url, init) => undiciFetch(url, { ...init, dispatcher: agent });
const api = getClient(
  { baseUrl: env("KM_URL"), globalInit: { bearerToken: env("KM_TOKEN") }, fetch },
  { config: createChainForkConfig(defaultChainConfig) },
);
const say = (step, value) => console.log(JSON.stringify({ step, value }));

say("list", (await api.listKeys()).value());
const imported = await api.importKeystores({
  keystores: [fs.readFileSync(env("KM_KEYSTORE"), "utf8")],
  passwords: [env("KM_PASSWORD")],
  slashingProtection: env("KM_HISTORY"),
});
say("import", imported.value());
say("list-after-import", (await api.listKeys()).value());
const deleted = await api.deleteKeys({ pubkeys: [env("KM_PUBKEY")] });
say("delete", deleted.value());
say("list-after-delete", (await api.listKeys()).value());
// A wrong token: Lodestar reports the status.
const wrong = getClient(
  { baseUrl: env("KM_URL"), globalInit: { bearerToken: "0000" }, fetch },
  { config: createChainForkConfig(defaultChainConfig) },
);
const refused = await wrong.listKeys();
say("wrong-token", { ok: refused.ok, status: refused.status });
