// Prints what Vite's own loadEnv reads from ENV_DIR/.env, as JSON.
// usage: node load_env.mjs VITE_INSTALL_DIR ENV_DIR
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const [installDir, envDir] = process.argv.slice(2);
const entry = join(installDir, "node_modules", "vite", "dist", "node", "index.js");
const vite = await import(pathToFileURL(entry).href);
process.stdout.write(JSON.stringify(vite.loadEnv("development", envDir, "VITE_")));
