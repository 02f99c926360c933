// Number formatting shared by the live pages, the same rules as llmbench.humanize.number_text and
// apps.batches.analysis.format_value on the server, so a figure reads the same before and after a refresh.
window.LLMBenchFormat = (function () {
  function missing(v) { return v === null || v === undefined || v === "" || isNaN(Number(v)); }
  // An en dash when missing, whole numbers without decimals (max_tokens 200, not 200.0), thousands
  // separators, `digits` decimals or a precision that suits the size.
  function num(v, digits) {
    if (missing(v)) return "–";
    var n = Number(v);
    if (Number.isInteger(n)) return n.toLocaleString("en-US");
    if (digits === undefined) {
      var size = Math.abs(n);
      digits = size >= 1000 ? 0 : size >= 100 ? 1 : size >= 1 ? 2 : size >= 0.01 ? 3 : 4;
    }
    return n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }
  // A parameter value or load level as it was set: 200, 0.7, 1,000.
  function param(v) {
    if (missing(v)) return "–";
    return Number(Number(v).toPrecision(10)).toLocaleString("en-US", { maximumFractionDigits: 10 });
  }
  return { num: num, param: param };
})();
