// Small behaviours that every page may use, declared in the HTML with data- attributes. They used to be
// inline onchange=/onsubmit=/onclick= handlers, which the Content-Security-Policy forbids (script-src has
// no 'unsafe-inline'). Listeners sit on the document, so content that htmx swaps in works too.
//   <select data-autosubmit>                 submits its form when the choice changes
//   <form data-confirm="Delete this?">       asks first; submits only if the person confirms
//   <form data-join-checked="run" data-join-into="runs">
//                                            on submit, writes the values of the ticked `run` boxes,
//                                            comma-separated, into the form's `runs` field
(function () {
  document.addEventListener("change", function (event) {
    var select = event.target;
    if (select.matches && select.matches("select[data-autosubmit]") && select.form) select.form.submit();
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset.confirm !== undefined && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      return;
    }
    if (form.dataset.joinChecked && form.dataset.joinInto) {
      var ticked = form.querySelectorAll('input[type="checkbox"][name="' + form.dataset.joinChecked + '"]:checked');
      form.elements[form.dataset.joinInto].value = Array.prototype.map.call(ticked, function (box) { return box.value; }).join(",");
    }
  }, true);  // capture: runs before any other submit handler (htmx's among them) sees the event
})();
