// The event form: the patient record field shows only for a Public Conference, and a
// refused form starts at the first field to put right.

const type = document.getElementById("event_type_id");
const recordField = document.getElementById("record-patient-field");
const record = document.getElementById("record_patient_id");

function showRecordField() {
  const isPublic = "public" in (type.selectedOptions[0]?.dataset ?? {});
  recordField.hidden = !isPublic;
  // A disabled select is not submitted: no record sneaks in for another type.
  record.disabled = !isPublic;
}

type.addEventListener("change", showRecordField);
showRecordField();

const invalid = document.querySelector('[aria-invalid="true"]');
(invalid?.matches("fieldset") ? invalid.querySelector("input") : invalid)?.focus();
