// Parse Mermaid diagrams with the real parser (mermaid.parse, as GitHub and GitLab render
// them) under jsdom. stdin: a JSON array of diagram texts; stdout: a JSON array with, per
// diagram, {"ok": true, "type": "flowchart-v2"} or {"ok": false, "error": "..."}.
import { JSDOM } from "jsdom";

const dom = new JSDOM("<!doctype html><html><body></body></html>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false, securityLevel: "strict" });

let input = "";
for await (const chunk of process.stdin) input += chunk;
const out = [];
for (const text of JSON.parse(input)) {
  try {
    const r = await mermaid.parse(text);
    out.push({ ok: true, type: r.diagramType });
  } catch (e) {
    out.push({ ok: false, error: String(e && e.message ? e.message : e) });
  }
}
process.stdout.write(JSON.stringify(out) + "\n");
