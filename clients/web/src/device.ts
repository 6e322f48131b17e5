// A session's device in words, from the user agent it logged in with:
// "Chrome on Linux", "Safari on iPhone", "grpcurl", "Python client". The
// sessions page shows this, and the raw string in a tooltip.
import "./device.css";

/** Programs that are not browsers, by a token in their user agent. */
const PROGRAMS: [RegExp, string][] = [
  [/\bgrpcurl\//i, "grpcurl"],
  [/\bgrpcui\//i, "grpcui"],
  [/\bpostman/i, "Postman"],
  [/\binsomnia/i, "Insomnia"],
  [/\bcurl\//i, "curl"],
  [/\bwget\//i, "Wget"],
  [/\b(grpc-python|python|aiohttp|httpx|urllib)/i, "Python client"],
  [/\bgrpc-go\/|\bGo-http-client\//i, "Go client"],
  [/\b(grpc-java|okhttp)/i, "Java client"],
  [/\bgrpc-dotnet|\bgrpc-csharp/i, ".NET client"],
  [/\bgrpc-ruby|\bruby/i, "Ruby client"],
  [/\bgrpc-node|\bnode-fetch|\bundici|\bnode\b/i, "Node.js client"],
  [/\btonic\/|\breqwest\/|\bhyper\//i, "Rust client"],
  [/\bgrpc-c\+\+|\bgrpc-c\//i, "gRPC client"],
];

/** Browsers, most specific first (Edge and Opera say "Chrome" too). */
const BROWSERS: [RegExp, string][] = [
  [/\bEdg(e|A|iOS)?\//, "Edge"],
  [/\b(OPR|Opera)\//, "Opera"],
  [/\bSamsungBrowser\//, "Samsung Internet"],
  [/\bVivaldi\//, "Vivaldi"],
  [/\b(Firefox|FxiOS)\//, "Firefox"],
  [/\b(HeadlessChrome|Chrome|Chromium|CriOS)\//, "Chrome"],
  [/\bVersion\/[\d.]+.*\bSafari\//, "Safari"],
];

const SYSTEMS: [RegExp, string][] = [
  [/\biPhone\b/, "iPhone"],
  [/\biPad\b/, "iPad"],
  [/\bAndroid\b/, "Android"],
  [/\bCrOS\b/, "ChromeOS"],
  [/\bWindows\b/, "Windows"],
  [/\bMac OS X\b|\bMacintosh\b/, "macOS"],
  [/\bLinux\b|\bX11\b/, "Linux"],
];

function first(ua: string, table: [RegExp, string][]): string | undefined {
  return table.find(([re]) => re.test(ua))?.[1];
}

/** A short, readable name for the device behind a user agent. */
export function describeDevice(userAgent: string): string {
  const ua = userAgent.trim();
  if (!ua) return "Unknown device";
  if (/^Mozilla\//.test(ua) || /AppleWebKit|Gecko\//.test(ua)) {
    const browser = first(ua, BROWSERS);
    const system = first(ua, SYSTEMS);
    if (browser && system) return `${browser} on ${system}`;
    if (browser || system) return browser ?? `Browser on ${system}`;
  }
  const program = first(ua, PROGRAMS);
  if (program) return program;
  // Something else: its first product token, say "my-bot" of "my-bot/1.2 (…)".
  const token = /^[^\s/()]{1,40}/.exec(ua)?.[0];
  return token ?? "Unknown device";
}
