/* placeholder */ int faultinj_placeholder;
