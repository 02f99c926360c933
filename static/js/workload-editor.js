// The workload editor (templates/workloads/workload_form.html): shows only what applies to the chosen
// source, distribution kinds, session mode and response format, and disables what is hidden so that neither
// the save nor the live preview sends settings that do nothing. Without this script every field shows and
// the server ignores those that do not apply.
//   <fieldset data-show="synthetic dataset">   shown for these sources ("output-distribution": a dataset
//                                              whose output length comes from the distribution)
//   <fieldset data-dist="input">               a distribution: shows the parameters of its kind
//   <div data-show-when="multi_turn">          shown while the checkbox of that name is ticked
(function () {
  var PARAMS = {
    fixed: ["value"],
    uniform: ["min", "max"],
    normal: ["mean", "stdev", "min", "max"],
    lognormal: ["average", "median_ratio", "max"],
    empirical: ["edges", "weights"]
  };
  // a field shown only when another field has one value
  var FIELD_RULES = {
    request_json_schema: ["request_response_format", "json_schema"],
    sessions_users: ["sessions_mode", "user_centric"],
    sessions_turn_gap_s: ["sessions_mode", "user_centric"]
  };

  function value(form, name) {
    var el = form.elements[name];
    if (!el) return "";
    if (el.type === "checkbox") return el.checked ? "on" : "";
    return el.value;
  }

  function setShown(el, shown) {
    el.hidden = !shown;
    el.style.display = shown ? "" : "none";  // .form .field sets display, which beats the hidden attribute
  }

  function isShown(el, form) {
    for (var node = el; node && node !== form; node = node.parentElement) {
      if (node.hidden) return false;
    }
    return true;
  }

  function update(form) {
    var source = value(form, "source");
    var active = [source];
    if (source === "dataset" && value(form, "dataset_output_from") === "distribution") active.push("output-distribution");
    form.querySelectorAll("[data-show]").forEach(function (el) {
      var wanted = el.dataset.show.split(/\s+/);
      setShown(el, wanted.some(function (token) { return active.indexOf(token) !== -1; }));
    });
    form.querySelectorAll("[data-show-when]").forEach(function (el) {
      setShown(el, value(form, el.dataset.showWhen) === "on");
    });
    form.querySelectorAll("[data-dist]").forEach(function (fieldset) {
      var group = fieldset.dataset.dist;
      var params = PARAMS[value(form, group + "_dist")] || [];
      fieldset.querySelectorAll("[data-field]").forEach(function (wrap) {
        var name = wrap.dataset.field;
        if (name === group + "_dist") return;
        setShown(wrap, params.indexOf(name.slice(group.length + 1)) !== -1);
      });
    });
    Object.keys(FIELD_RULES).forEach(function (name) {
      var wrap = form.querySelector('[data-field="' + name + '"]');
      var rule = FIELD_RULES[name];
      if (wrap) setShown(wrap, value(form, rule[0]) === rule[1]);
    });
    // hidden inputs are disabled: browsers then leave them out of the form data
    Array.prototype.forEach.call(form.elements, function (el) {
      if (el.name && el.name !== "csrfmiddlewaretoken" && el.tagName !== "BUTTON") el.disabled = !isShown(el, form);
    });
  }

  function init(root) {
    root.querySelectorAll("form[data-workload-editor]").forEach(function (form) {
      if (form.dataset.editorReady) return;
      form.dataset.editorReady = "1";
      // capture: runs before htmx's own change listener reads the form for the preview
      form.addEventListener("change", function () { update(form); }, true);
      update(form);
    });
  }

  // the script sits at the end of the page: set the form up now, before htmx's "load" trigger asks for a preview
  init(document);
  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (e) { init(e.target); });
})();
